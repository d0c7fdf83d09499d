//! Compiles `proto/**/*.proto` with protox, a protobuf compiler in pure Rust, so building
//! signoff needs no `protoc` on the machine.

use std::error::Error;

const PROTOS: &[&str] = &["signoff/v1/agent.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
