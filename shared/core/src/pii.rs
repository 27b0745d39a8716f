//! PII scrubbing. Filled in below.
