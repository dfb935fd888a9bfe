//! pilot-webhook
