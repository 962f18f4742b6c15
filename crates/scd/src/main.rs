//! The `scd` binary: parses the command line and sets up logging.

fn main() {}
