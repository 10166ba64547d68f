//! Intel AMX (Advanced Matrix Extensions) bf16 tiles: the one kernel that uses them, a bf16
//! product `C[32, 32] = A[32, K] · Bᵀ` with f32 accumulation, as fast as the chip's matrix unit
//! allows (≈ 16× the f32 vector units per core on Sapphire Rapids).
//!
//! Availability is decided once per process: the CPU must report AMX-TILE and AMX-BF16, Linux
//! must grant the tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)`), a self-test product
//! must come out right, and `UNRAVEL_NO_AMX` must be unset (to compare with the f32 path).
//!
//! Layouts (bf16, as `u16` bits):
//! - A: row-major with a row stride of `lda` elements, K a multiple of 32;
//! - B: packed by [`pack_b`]: per block of 16 output columns and 32 of K, a 16 × 32 tile in the
//!   "VNNI" order the instruction reads (`[k/2][column][k%2]`).
//!
//! Tile state is per thread: [`Tiles::configure`] loads the configuration, and its drop releases
//! it. Nothing inside may run other work on the same thread (no rayon calls).

use std::sync::OnceLock;

/// Output columns per B tile, K elements per tile step.
pub const TILE_N: usize = 16;
pub const TILE_K: usize = 32;
/// Elements of one packed B tile.
const B_TILE: usize = TILE_N * TILE_K;

/// Whether the AMX bf16 kernel can run here (decided once).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| std::env::var_os("UNRAVEL_NO_AMX").is_none() && detect() && self_test())
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn detect() -> bool {
    // CPUID.(EAX=7, ECX=0):EDX bit 22 = AMX-BF16, bit 24 = AMX-TILE.
    let r = std::arch::x86_64::__cpuid_count(7, 0);
    if r.edx & (1 << 22) == 0 || r.edx & (1 << 24) == 0 {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain syscall with integer arguments.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn detect() -> bool {
    false
}

/// One 32 × 32 × 64 product of known small integers, exact in bf16 and f32.
fn self_test() -> bool {
    let k = 64;
    let a: Vec<f32> = (0..32 * k).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
    let b: Vec<f32> = (0..32 * k).map(|i| ((i * 3) % 7) as f32 - 3.0).collect();
    let mut a16 = Bf16Buf::zeros(a.len());
    convert(&a, a16.as_mut_slice());
    let packed = pack_b(&b, 32, k, k);
    let mut c = [0f32; 32 * 32];
    {
        let tiles = Tiles::configure_unchecked();
        tiles.block(a16.as_slice(), k, packed.as_slice(), k / TILE_K, 0, &mut c);
    }
    (0..32).all(|i| {
        (0..32).all(|j| {
            let want: f32 = (0..k).map(|l| a[i * k + l] * b[j * k + l]).sum();
            c[i * 32 + j] == want
        })
    })
}

/// bf16 bits in 64-byte aligned storage: a tile row that straddled two cache lines would cost
/// two loads (the kernel ran at half speed on `Vec<u16>`).
#[derive(Default, Clone)]
pub struct Bf16Buf(Vec<Line>);

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; 32]);

impl Bf16Buf {
    /// `len` zeros (rounded up to whole cache lines).
    pub fn zeros(len: usize) -> Bf16Buf {
        Bf16Buf(vec![Line([0; 32]); len.div_ceil(32)])
    }

    /// Resized to hold at least `len` elements (contents unspecified).
    pub fn resize(&mut self, len: usize) {
        self.0.resize(len.div_ceil(32), Line([0; 32]));
    }

    pub fn as_slice(&self) -> &[u16] {
        // SAFETY: `Line` is 32 u16 with no padding (repr(C), size 64 = 32 × 2).
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() * 32) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u16] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.0.len() * 32) }
    }
}

/// f32 → bf16 bits, rounded to nearest even (finite inputs; callers check). Plain integer
/// arithmetic, so loops over it vectorise.
#[inline(always)]
pub fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// [`to_bf16`] over a slice.
pub fn convert(src: &[f32], dst: &mut [u16]) {
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = to_bf16(v);
    }
}

/// Packs the rows of `b` (`[n, k]` row-major, row stride `ldb`) as B tiles for a product with
/// `n` output columns, zero-padded to multiples of 32 columns and 32 of K. Tile (column block
/// `j`, K step `t`) starts at element `(j · k_steps + t) · 512`.
pub fn pack_b(b: &[f32], n: usize, k: usize, ldb: usize) -> Bf16Buf {
    let (n_blocks, k_steps) = (n.div_ceil(32) * 2, k.div_ceil(TILE_K));
    let mut out = Bf16Buf::zeros(n_blocks * k_steps * B_TILE);
    pack_b_into(b, n, k, ldb, out.as_mut_slice());
    out
}

/// [`pack_b`] into a buffer of the right length, one column block at a time (`out` may be split
/// by the caller in blocks of `k_steps · 512` elements to pack in parallel).
pub fn pack_b_into(b: &[f32], n: usize, k: usize, ldb: usize, out: &mut [u16]) {
    let k_steps = k.div_ceil(TILE_K);
    for (j, block) in out.chunks_mut(k_steps * B_TILE).enumerate() {
        pack_b_block(b, n, k, ldb, j, block);
    }
}

/// One column block `j` (columns `16j .. 16j + 16`) of [`pack_b`].
pub fn pack_b_block(b: &[f32], n: usize, k: usize, ldb: usize, j: usize, block: &mut [u16]) {
    let mut tile = [0u32; B_TILE / 2];
    for (t, out) in block.chunks_exact_mut(B_TILE).enumerate() {
        let (lo, hi) = (t * TILE_K, ((t + 1) * TILE_K).min(k));
        tile.fill(0);
        for c in 0..TILE_N {
            let col = j * TILE_N + c;
            if col >= n {
                break;
            }
            // K pairs are adjacent in the tile: one u32 per pair, the 16 columns side by side.
            let src = &b[col * ldb + lo..col * ldb + hi];
            for (kk2, pair) in src.chunks(2).enumerate() {
                let low = to_bf16(pair[0]) as u32;
                let high = pair.get(1).map_or(0, |&v| to_bf16(v) as u32);
                tile[kk2 * TILE_N + c] = low | (high << 16);
            }
        }
        for (o, &v) in out.chunks_exact_mut(2).zip(&tile) {
            o[0] = v as u16;
            o[1] = (v >> 16) as u16;
        }
    }
}

/// This thread's tile configuration, released on drop; not `Send`, as the state is the thread's.
pub struct Tiles(std::marker::PhantomData<*const ()>);

#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl Tiles {
    /// Configures the eight tiles as 16 rows × 64 bytes, if AMX is [`available`].
    pub fn configure() -> Option<Tiles> {
        available().then(Tiles::configure_unchecked)
    }

    /// [`Tiles::configure`] once the kernel granted the tile state (the self-test runs before
    /// `available` has its answer).
    fn configure_unchecked() -> Tiles {
        let mut cfg = TileConfig([0; 64]);
        cfg.0[0] = 1; // palette 1
        for t in 0..8 {
            // bytes per row (u16 little-endian at 16 + 2t), rows (u8 at 48 + t)
            cfg.0[16 + 2 * t] = 64;
            cfg.0[48 + t] = 16;
        }
        // SAFETY: AMX was granted (`available`); the configuration is 64 valid bytes.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            std::arch::asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        }
        Tiles(std::marker::PhantomData)
    }

    /// `c[32, 32] = a[32 rows from a, K] · (packed columns 2j', 2j'+1 of b)ᵀ` for the column
    /// blocks starting at `b_block` (in units of 16 columns) over `k_steps` steps of 32; `lda`
    /// is A's row stride in elements. `c` is row-major with 32 columns.
    #[inline]
    pub fn block(
        &self,
        a: &[u16],
        lda: usize,
        b: &[u16],
        k_steps: usize,
        b_block: usize,
        c: &mut [f32; 32 * 32],
    ) {
        assert!(lda >= k_steps * TILE_K && a.len() >= 31 * lda + k_steps * TILE_K);
        assert!(b.len() >= (b_block + 2) * k_steps * B_TILE);
        let stride_a = (lda * 2) as isize;
        let b0 = b[b_block * k_steps * B_TILE..].as_ptr();
        let b1 = b[(b_block + 1) * k_steps * B_TILE..].as_ptr();
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the asserts above keep every tile load inside `a` and `b` (16 rows × 64 bytes
        // each) and the stores inside `c`; the tiles were configured by `configure`.
        unsafe {
            use std::arch::asm;
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            for t in 0..k_steps {
                let a0 = a.as_ptr().add(t * TILE_K);
                let a1 = a0.offset(16 * stride_a / 2);
                asm!(
                    "tileloadd tmm4, [{a0} + {sa}*1]",
                    "tileloadd tmm5, [{a1} + {sa}*1]",
                    "tileloadd tmm6, [{b0} + {sb}*1]",
                    "tileloadd tmm7, [{b1} + {sb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0,
                    a1 = in(reg) a1,
                    b0 = in(reg) b0.add(t * B_TILE),
                    b1 = in(reg) b1.add(t * B_TILE),
                    sa = in(reg) stride_a,
                    sb = in(reg) 64isize,
                    options(nostack, readonly)
                );
            }
            let c0 = c.as_mut_ptr();
            asm!(
                "tilestored [{c0} + {sc}*1], tmm0",
                "tilestored [{c1} + {sc}*1], tmm1",
                "tilestored [{c2} + {sc}*1], tmm2",
                "tilestored [{c3} + {sc}*1], tmm3",
                c0 = in(reg) c0,
                c1 = in(reg) c0.add(16),
                c2 = in(reg) c0.add(16 * 32),
                c3 = in(reg) c0.add(16 * 32 + 16),
                sc = in(reg) 128isize,
                options(nostack)
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (stride_a, b0, b1, c);
            unreachable!("AMX is x86_64 only");
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: releases the tile state this thread configured.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            std::arch::asm!("tilerelease", options(nostack, nomem));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_product_matches_f32_on_bf16_exact_values() {
        if !available() {
            eprintln!("no AMX on this CPU: skipped");
            return;
        }
        // 32 rows, 48 columns (a partial second pair of blocks), K = 80 (padded to 96).
        let (m, n, k) = (32, 48, 80);
        let lda = 96;
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 11) % 9) as f32 * 0.25 - 1.0)
            .collect();
        let b: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5) % 13) as f32 * 0.5 - 3.0)
            .collect();
        let mut a16 = Bf16Buf::zeros(m * lda);
        for r in 0..m {
            for l in 0..k {
                a16.as_mut_slice()[r * lda + l] = to_bf16(a[r * k + l]);
            }
        }
        let packed = pack_b(&b, n, k, k);
        let (a16, packed) = (a16.as_slice(), packed.as_slice());
        let tiles = Tiles::configure().unwrap();
        for pair in 0..2 {
            let mut c = [0f32; 32 * 32];
            tiles.block(a16, lda, packed, 3, pair * 2, &mut c);
            for i in 0..m {
                for j in 0..32 {
                    let col = pair * 32 + j;
                    let want: f32 = if col < n {
                        (0..k).map(|l| a[i * k + l] * b[col * k + l]).sum()
                    } else {
                        0.0
                    };
                    assert_eq!(c[i * 32 + j], want, "row {i} column {col}");
                }
            }
        }
    }
}
