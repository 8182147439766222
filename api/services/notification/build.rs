//! Generates the notification client from the appliance's OpenAPI document.

fn main() {
    safeguard_codegen::build_script::run("notification", "../../..");
}
