//! Rebuilds when the web UI's assets change: `include_dir!` embeds the
//! files of `src/web/assets`, but a new file there would not be noticed.
fn main() {
    println!("cargo:rerun-if-changed=src/web/assets");
}
