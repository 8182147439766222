//! Generates the a2a client from the appliance's OpenAPI document.

fn main() {
    safeguard_codegen::build_script::run("a2a", "../../..");
}
