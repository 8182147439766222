//! The table of every operation of the four services, written by `build.rs`
//! from the appliance's OpenAPI documents.

/// Where a parameter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// A `{name}` segment of the path.
    Path,
    /// A query parameter.
    Query,
    /// A request header.
    Header,
}

/// The JSON-schema type of a scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `string` (also date-times and enums).
    String,
    /// `integer`.
    Integer,
    /// `number` (no parameter or member of the current documents is one;
    /// another appliance version's may be).
    #[allow(dead_code)]
    Number,
    /// `boolean`.
    Boolean,
}

/// A path, query or header parameter of an operation.
#[derive(Debug)]
pub struct Param {
    /// The name on the wire.
    pub name: &'static str,
    /// The command-line flag (kebab case, unique in its command).
    pub flag: &'static str,
    /// Where it goes.
    pub location: Location,
    /// Whether the operation needs it.
    pub required: bool,
    /// Its type (of each item, for an array).
    pub kind: Kind,
    /// Whether it takes several values.
    pub array: bool,
    /// The schema's `format` (`int32`, `date-time`, ...), or empty.
    pub format: &'static str,
    /// The allowed values of an enum, or none.
    pub values: &'static [&'static str],
    /// The document's description.
    pub help: &'static str,
}

/// How a request body is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// A JSON document (`--body`, and flags for scalar members).
    Json,
    /// A JSON string (`--body` holds the text, or a JSON string).
    JsonString,
    /// Raw bytes from a file (`--in`).
    Raw,
    /// `multipart/form-data` with one file field (`--in`); the current
    /// documents offer `application/octet-stream` beside every multipart
    /// body, which is preferred, but another appliance version may not.
    #[allow(dead_code)]
    Multipart(&'static str),
}

/// A scalar member of a JSON object body, settable with its own flag.
#[derive(Debug)]
pub struct Member {
    /// The member's name in the body.
    pub name: &'static str,
    /// Its flag.
    pub flag: &'static str,
    /// Its type.
    pub kind: Kind,
    /// The allowed values of an enum, or none.
    pub values: &'static [&'static str],
    /// The document's description.
    pub help: &'static str,
}

/// An operation's request body.
#[derive(Debug)]
pub struct Body {
    /// The content type sent.
    pub content_type: &'static str,
    /// How it is sent.
    pub kind: BodyKind,
    /// Whether the document says it is required.
    pub required: bool,
    /// The document's description.
    pub help: &'static str,
    /// Flags for the scalar writable members of an object body.
    pub members: &'static [Member],
}

/// One operation of one service.
#[derive(Debug)]
pub struct Operation {
    /// `core`, `appliance`, `notification` or `a2a`.
    pub service: &'static str,
    /// The command group: the operation's first tag in kebab case.
    pub group: &'static str,
    /// The command: the operationId without tag prefix and `Async`, in kebab case.
    pub name: &'static str,
    /// The document's operationId.
    pub id: &'static str,
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The path template relative to the service's v4 base (`Users/{id}`).
    pub path: &'static str,
    /// The document's summary.
    pub summary: &'static str,
    /// The document's description.
    pub description: &'static str,
    /// Path, query and header parameters.
    pub params: &'static [Param],
    /// The request body, if any.
    pub body: Option<Body>,
    /// Whether a success answers with bytes (`application/octet-stream`).
    pub binary_response: bool,
}

/// Every operation of the four documents, in document order.
pub static OPERATIONS: &[Operation] = include!(concat!(env!("OUT_DIR"), "/operations.rs"));
