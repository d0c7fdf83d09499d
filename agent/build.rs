//! Links `signoff-sshd` with GCC's unwinder built in, as `gcc -static-libgcc` would.
//!
//! sshd starts `signoff-sshd` twice per login, and on a dynamically linked build most of a
//! call is process start-up. Rust's standard library links the unwinder from the shared
//! `libgcc_s.so.1`; loading, mapping and relocating that one library costs about 8 page
//! faults and 0.1 ms per call, as much as the lookups and the rest of the binary together
//! (`BENCHMARKS.md`, "`signoff-sshd`"). Taking the unwinder's objects from the static
//! `libgcc_eh.a` instead leaves libc the only shared library, as for `/bin/true`; panics
//! still unwind and print backtraces. The daemon's binary is left as it is.
//!
//! Only for dynamically linked glibc targets: a `+crt-static` build already links
//! `libgcc_eh.a` (linking it twice would define every symbol twice), and other targets do
//! not use `libgcc_s`. A build script sees `crt-static` only when it comes from `RUSTFLAGS`
//! (with `--target`), not from `cargo rustc -- -C target-feature=+crt-static`: build a
//! static `signoff-sshd` the first way (agent README, "Building for production").

use std::env;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let crt_static = env::var("CARGO_CFG_TARGET_FEATURE")
        .unwrap_or_default()
        .split(',')
        .any(|feature| feature == "crt-static");
    if target_os == "linux" && target_env == "gnu" && !crt_static {
        // Whole archive: the unwinder's symbols must all be defined here, so that the
        // linker (`--as-needed`) finds nothing left for `libgcc_s` to provide and drops it.
        println!(
            "cargo::rustc-link-arg-bin=signoff-sshd=-Wl,--whole-archive,-l:libgcc_eh.a,--no-whole-archive"
        );
    }
}
