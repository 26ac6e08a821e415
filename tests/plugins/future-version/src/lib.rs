//! Built against `streamhost:plugin@0.3.0`, which this host does not support.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

struct Future;

impl exports::streamhost::plugin::handler::Guest for Future {
    fn process(_payload: Vec<u8>) -> Result<(), String> {
        Ok(())
    }
}

export!(Future);
