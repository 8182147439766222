//! The platform catalogue (`core/v4/Platforms`): shaped like core.json's
//! `Platform` schema, with `PlatformType`, `PlatformFamily` and `DeviceClass`
//! values from that document's enums.
//!
//! Where the ids come from: safeguard-ps (`src/datatypes.psm1`) documents
//! that the appliance keeps "legacy platform definitions differentiated only
//! by version and architecture" below Id 500 and searches current platforms
//! with `Id ge 500`, and that Id 522 is a `Directory`-class platform its LDAP
//! directory search leaves out (Active Directory, which is not an LDAP
//! platform). Those ranges and 522 are the only sourced ids: no vendor
//! document or script found lists the other ids, so every other number below
//! is the emulator's own (188, "Other Linux", is kept from earlier emulator
//! versions, whose seeded asset used it). Names and display names follow the
//! appliance's generic platforms (SPP administration guide, "Connection tab
//! (add asset)": Other, Other Managed, Other Directory, Linux) and its
//! platform types.

use serde_json::{json, Value};

/// Id of the seeded asset's platform, "Other Linux".
pub(crate) const OTHER_LINUX: i64 = 188;

/// `(Id, Name, DisplayName, PlatformType, PlatformFamily, DeviceClass, SSH)`.
type Row = (
    i64,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
);

const ROWS: &[Row] = &[
    (
        OTHER_LINUX,
        "Other Linux",
        "Other Linux",
        "LinuxOther",
        "Linux",
        "Server",
        true,
    ),
    (500, "Other", "Other", "Other", "None", "Unknown", false),
    (
        501,
        "Other Managed",
        "Other Managed",
        "OtherManaged",
        "None",
        "Unknown",
        false,
    ),
    (
        502,
        "Other Directory",
        "Other Directory",
        "OtherDirectory",
        "None",
        "Directory",
        false,
    ),
    (503, "Linux", "Linux", "LinuxOther", "Linux", "Server", true),
    (
        504,
        "Windows Server",
        "Windows Server",
        "Windows",
        "Windows",
        "Server",
        false,
    ),
    (
        505,
        "Windows Desktop",
        "Windows Desktop",
        "Windows",
        "Windows",
        "Server",
        false,
    ),
    (
        506,
        "Windows SSH",
        "Windows SSH",
        "WindowsSsh",
        "WindowsSsh",
        "Server",
        true,
    ),
    (
        507,
        "Windows Remote Management",
        "Windows Remote Management",
        "WindowsRm",
        "WindowsRm",
        "Server",
        false,
    ),
    (
        508,
        "Red Hat Enterprise Linux",
        "Red Hat Enterprise Linux",
        "RedHatEnterprise",
        "Linux",
        "Server",
        true,
    ),
    (509, "Ubuntu", "Ubuntu", "Ubuntu", "Linux", "Server", true),
    (510, "Debian", "Debian", "Debian", "Linux", "Server", true),
    (
        511,
        "SUSE Linux Enterprise Server",
        "SUSE Linux Enterprise Server",
        "Suse",
        "Linux",
        "Server",
        true,
    ),
    (
        512,
        "Oracle Linux",
        "Oracle Linux",
        "OracleLinux",
        "Linux",
        "Server",
        true,
    ),
    (
        513,
        "Amazon Linux",
        "Amazon Linux",
        "AmazonLinux",
        "Linux",
        "Server",
        true,
    ),
    (514, "AIX", "IBM AIX", "AIX", "AIX", "Server", true),
    (
        515,
        "Solaris",
        "Oracle Solaris",
        "Solaris",
        "Solaris",
        "Server",
        true,
    ),
    (516, "HP-UX", "HP-UX", "HPUX", "HPUX", "Server", true),
    (517, "macOS", "macOS", "OSX", "OSX", "Server", true),
    (
        518, "FreeBSD", "FreeBSD", "FreeBsd", "FreeBsd", "Server", true,
    ),
    (
        519,
        "Cisco IOS",
        "Cisco IOS",
        "CiscoIOS",
        "Cisco",
        "NetworkDevice",
        true,
    ),
    (
        520,
        "Microsoft SQL Server",
        "Microsoft SQL Server",
        "SqlServer",
        "SqlServer",
        "Database",
        false,
    ),
    (
        521,
        "Oracle Database",
        "Oracle Database",
        "Oracle",
        "Oracle",
        "Database",
        false,
    ),
    (
        522,
        "Active Directory",
        "Active Directory",
        "MicrosoftAD",
        "MicrosoftAD",
        "Directory",
        false,
    ),
    (
        523,
        "OpenLDAP",
        "OpenLDAP",
        "Ldap",
        "OpenLdap",
        "Directory",
        false,
    ),
    (524, "MySQL", "MySQL", "MySQL", "MySQL", "Database", false),
    (
        525,
        "PostgreSQL",
        "PostgreSQL",
        "PostgreSQL",
        "PostgreSQL",
        "Database",
        false,
    ),
];

/// The whole catalogue, ordered by id.
pub(crate) fn all() -> Vec<Value> {
    let mut v: Vec<Value> = ROWS.iter().map(platform).collect();
    v.sort_by_key(|p| p["Id"].as_i64());
    v
}

/// One platform by id.
pub(crate) fn get(id: i64) -> Option<Value> {
    ROWS.iter().find(|r| r.0 == id).map(platform)
}

fn platform(r: &Row) -> Value {
    let &(id, name, display, kind, family, class, ssh) = r;
    let windows = family.starts_with("Windows");
    json!({
        "Id": id,
        "PlatformType": kind,
        "PlatformFamily": family,
        "DisplayName": display,
        "Name": name,
        "Description": Value::Null,
        "Version": Value::Null,
        "Architecture": Value::Null,
        "DeviceClass": class,
        // Unix-like systems tell account names apart by case.
        "IsAcctNameCaseSensitive": ssh && !windows,
        "LicenseClass": if name == "Windows Desktop" { "Desktop" } else { "System" },
        "IsSystemOwned": true,
        // Only custom platforms list their operations.
        "SupportedOperations": Value::Null,
        "ConnectionProperties": {
            "DefaultPort": if ssh { json!(22) } else { Value::Null },
            "SupportsSshTransport": ssh,
            "SupportsPasswordAuthentication": kind != "Other" && kind != "OtherManaged",
            "SupportsSshKeyAuthentication": ssh,
        },
    })
}
