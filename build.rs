//! Compiles the gRPC API (proto/) with protox, a pure-Rust protobuf compiler (no system protoc),
//! into tonic + prost code, and writes the encoded descriptor set that server reflection serves.

#[cfg(feature = "service")]
const PROTO_ROOT: &str = "proto";
#[cfg(feature = "service")]
const PROTO_FILE: &str = "tee_verifier/v1/verifier.proto";
/// Read by `src/service/mod.rs` (`include_bytes!`) for server reflection.
#[cfg(feature = "service")]
const DESCRIPTOR_SET_FILE: &str = "tee_verifier_v1_descriptor.bin";

#[cfg(not(feature = "service"))]
fn main() {}

#[cfg(feature = "service")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    // Source info keeps the proto comments, which reflection hands to grpcurl `describe`.
    compiler.include_source_info(true);
    compiler.open_file(PROTO_FILE)?;

    let out_dir =
        std::path::PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    std::fs::write(
        out_dir.join(DESCRIPTOR_SET_FILE),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .emit_rerun_if_changed(false)
        // prost's codec, with a message that does not decode as INVALID_ARGUMENT.
        .codec_path("crate::service::codec::StrictCodec")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
