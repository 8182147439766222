//! A stateful fake One Identity Safeguard appliance (SPP) and Safeguard for
//! Privileged Sessions (SPS), served over HTTPS on loopback.
