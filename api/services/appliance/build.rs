//! Generates the appliance client from the appliance's OpenAPI document.

fn main() {
    safeguard_codegen::build_script::run("appliance", "../../..");
}
