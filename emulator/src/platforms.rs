//! The platform catalogue (`core/v4/Platforms`): shaped like core.json's
//! `Platform` schema, with `PlatformType`, `PlatformFamily` and `DeviceClass`
//! values from that document's enums.
//!
//! Where the ids and names come from (the vendor publishes no catalogue):
//!
//! * 521 is "Other Linux": safeguard-ps' test suites create their Linux
//!   assets with `-Platform 521` and say so ("Platform ID 521 is "Other
//!   Linux" (built-in, not Custom)", `test/Suites/Suite-CustomPlatforms.ps1`).
//! * 188 is "Ubuntu Other", a legacy platform: SafeguardDotNet's README
//!   creates a Linux asset with `PlatformId = 188, // Ubuntu Other`.
//! * Current platforms have `Id >= 500`, legacy ones ("differentiated only
//!   by version and architecture") `Id < 500` (safeguard-ps
//!   `src/datatypes.psm1`, which searches `Id ge 500`).
//! * 522 is a `Directory`-class platform that safeguard-ps' LDAP directory
//!   search leaves out (`Id ne 522`); that it is Active Directory (the
//!   directory that is not an LDAP platform) is the emulator's reading.
//! * The display names "Other", "Other Managed", "Other Directory" (SPP
//!   administration guide, "Connection tab (add asset)"; safeguard-ps
//!   `samples/load-bulk-assets.ps1`), "Windows Server (WinRM)" and "Windows
//!   Desktop (WinRM)" (safeguard-ps `samples/new-windows-asset-with-discovery.ps1`).
//!
//! Every other id (the 600s) is the emulator's own, chosen clear of the
//! appliance's known ones and at or above 500 so that the vendor's
//! `Id ge 500` searches find them.
use serde_json::{json, Value};

/// Id of the seeded asset's platform, "Other Linux" (sourced, see above).
pub(crate) const OTHER_LINUX: i64 = 521;

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
    // Sourced ids.
    (
        188,
        "Ubuntu",
        "Ubuntu Other",
        "Ubuntu",
        "Linux",
        "Server",
        true,
    ),
    (
        OTHER_LINUX,
        "Other Linux",
        "Other Linux",
        "LinuxOther",
        "Linux",
        "Server",
        true,
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
    // The emulator's ids (sourced names where noted above).
    (600, "Other", "Other", "Other", "None", "Unknown", false),
    (
        601,
        "Other Managed",
        "Other Managed",
        "OtherManaged",
        "None",
        "Unknown",
        false,
    ),
    (
        602,
        "Other Directory",
        "Other Directory",
        "OtherDirectory",
        "None",
        "Directory",
        false,
    ),
    (
        603,
        "Windows Server",
        "Windows Server",
        "Windows",
        "Windows",
        "Server",
        false,
    ),
    (
        604,
        "Windows Desktop",
        "Windows Desktop",
        "Windows",
        "Windows",
        "Server",
        false,
    ),
    (
        605,
        "Windows Server (WinRM)",
        "Windows Server (WinRM)",
        "WindowsRm",
        "WindowsRm",
        "Server",
        false,
    ),
    (
        606,
        "Windows Desktop (WinRM)",
        "Windows Desktop (WinRM)",
        "WindowsRm",
        "WindowsRm",
        "Server",
        false,
    ),
    (
        607,
        "Windows SSH",
        "Windows SSH",
        "WindowsSsh",
        "WindowsSsh",
        "Server",
        true,
    ),
    (
        608,
        "Red Hat Enterprise Linux",
        "Red Hat Enterprise Linux",
        "RedHatEnterprise",
        "Linux",
        "Server",
        true,
    ),
    (609, "Ubuntu", "Ubuntu", "Ubuntu", "Linux", "Server", true),
    (610, "Debian", "Debian", "Debian", "Linux", "Server", true),
    (
        611,
        "SUSE Linux Enterprise Server",
        "SUSE Linux Enterprise Server",
        "Suse",
        "Linux",
        "Server",
        true,
    ),
    (
        612,
        "Oracle Linux",
        "Oracle Linux",
        "OracleLinux",
        "Linux",
        "Server",
        true,
    ),
    (
        613,
        "Amazon Linux",
        "Amazon Linux",
        "AmazonLinux",
        "Linux",
        "Server",
        true,
    ),
    (614, "AIX", "IBM AIX", "AIX", "AIX", "Server", true),
    (
        615,
        "Solaris",
        "Oracle Solaris",
        "Solaris",
        "Solaris",
        "Server",
        true,
    ),
    (616, "HP-UX", "HP-UX", "HPUX", "HPUX", "Server", true),
    (617, "macOS", "macOS", "OSX", "OSX", "Server", true),
    (
        618, "FreeBSD", "FreeBSD", "FreeBsd", "FreeBsd", "Server", true,
    ),
    (
        619,
        "Cisco IOS",
        "Cisco IOS",
        "CiscoIOS",
        "Cisco",
        "NetworkDevice",
        true,
    ),
    (
        620,
        "Microsoft SQL Server",
        "Microsoft SQL Server",
        "SqlServer",
        "SqlServer",
        "Database",
        false,
    ),
    (
        621,
        "Oracle Database",
        "Oracle Database",
        "Oracle",
        "Oracle",
        "Database",
        false,
    ),
    (
        622,
        "OpenLDAP",
        "OpenLDAP",
        "Ldap",
        "OpenLdap",
        "Directory",
        false,
    ),
    (623, "MySQL", "MySQL", "MySQL", "MySQL", "Database", false),
    (
        624,
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
    // Legacy platforms (Id < 500) carry a version ("Ubuntu Other").
    let version = if id < 500 {
        json!("Other")
    } else {
        Value::Null
    };
    json!({
        "Id": id,
        "PlatformType": kind,
        "PlatformFamily": family,
        "DisplayName": display,
        "Name": name,
        "Description": Value::Null,
        "Version": version,
        "Architecture": Value::Null,
        "DeviceClass": class,
        // Unix-like systems tell account names apart by case.
        "IsAcctNameCaseSensitive": ssh && !windows,
        "LicenseClass": if name.starts_with("Windows Desktop") { "Desktop" } else { "System" },
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
