//! Run-time choice of instruction set: hot loops are written once as plain Rust, compiled again
//! inside `#[target_feature]` wrappers (AVX-512, AVX2 + FMA), and the widest the CPU has is
//! picked when called, so one binary runs everywhere and still uses wide vectors.

/// Returns `$body(args)` run through the wrapper compiled for the widest instruction set this
/// CPU has (`$avx512`, `$avx2`), or the baseline build of `$body` elsewhere.
macro_rules! dispatch {
    ($avx512:ident, $avx2:ident, $body:ident, ($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU features the function is compiled for were detected above.
                return unsafe { $avx512($($arg),*) };
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: as above.
                return unsafe { $avx2($($arg),*) };
            }
        }
        $body($($arg),*)
    }};
}

pub(crate) use dispatch;
