"""The Bazel Remote Execution API (v2) over gRPC: CAS, ByteStream, action cache, execution."""
