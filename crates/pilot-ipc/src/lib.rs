//! pilot-ipc
