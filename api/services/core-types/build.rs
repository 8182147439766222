//! Generates the core service's code from the appliance's OpenAPI document:
//! the types compile here, the client in `safeguard-api-core`.

fn main() {
    safeguard_codegen::build_script::run("core", "../../..");
}
