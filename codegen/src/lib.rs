//! Safeguard OpenAPI normalization and client generation.
