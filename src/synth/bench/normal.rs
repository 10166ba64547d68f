//! The standard normal's tail and quantile in f64 (std has no erf), and the fast random
//! numbers the sampler draws: a per-row xoshiro256++ seeded by SplitMix64, so row `i` of a
//! generator is the same whoever asks for it.

use rand::RngCore;

/// erfc(x), with relative error below 1.2e-7 everywhere (Numerical Recipes' Chebyshev fit).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// P(Z > x) for a standard normal Z.
pub fn upper_tail(x: f64) -> f64 {
    0.5 * erfc(x / std::f64::consts::SQRT_2)
}

/// The quantile Φ⁻¹(p) (Acklam's rational approximation, then one Halley step on [`upper_tail`]);
/// ±∞ at 0 and 1.
pub fn quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    // One Halley step: e = Φ(x) - p.
    let e = (1.0 - upper_tail(x)) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// xoshiro256++: small, fast, and fixed here (a library's "small RNG" may change between
/// versions, and a row must stay the same to resume a run exactly).
#[derive(Clone)]
pub struct RowRng([u64; 4]);

/// SplitMix64 step, used to seed.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl RowRng {
    /// The generator of row `index` of a model seeded `seed`, in `stream` (independent streams
    /// for independent uses of one seed).
    pub fn for_row(seed: u64, stream: u64, index: u64) -> RowRng {
        let mut s = seed ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03);
        let first = splitmix(&mut s);
        let mut s = first ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        RowRng([
            splitmix(&mut s),
            splitmix(&mut s),
            splitmix(&mut s),
            splitmix(&mut s),
        ])
    }

    /// Uniform in [0, 1) with 53 bits.
    #[inline]
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

impl RngCore for RowRng {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_quantile_match_known_values() {
        assert!((upper_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((upper_tail(1.959_963_985) - 0.025).abs() < 1e-8);
        assert!((upper_tail(-1.0) - 0.841_344_746).abs() < 1e-7);
        for p in [5e-4, 0.01, 0.3, 0.5, 0.9, 0.999_9] {
            let x = quantile(p);
            assert!(
                ((1.0 - upper_tail(x)) - p).abs() < 1e-6 * p.min(1.0 - p),
                "{p}"
            );
        }
    }

    #[test]
    fn rows_are_fixed_by_index() {
        let a = RowRng::for_row(42, 0, 7).next_u64();
        assert_eq!(a, RowRng::for_row(42, 0, 7).next_u64());
        assert_ne!(a, RowRng::for_row(42, 0, 8).next_u64());
        assert_ne!(a, RowRng::for_row(42, 1, 7).next_u64());
        assert_ne!(a, RowRng::for_row(43, 0, 7).next_u64());
    }
}
