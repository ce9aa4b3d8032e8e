//! How numbers read for people, shared by every face (the chat, the
//! commands, the doctor): sizes in binary units as `2.9 MiB`.

/// `512 B`, `2.9 MiB`, `41.0 GiB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::human_size(512), "512 B");
        assert_eq!(super::human_size(3 << 20), "3.0 MiB");
        assert_eq!(super::human_size(3_040_000), "2.9 MiB");
        assert_eq!(super::human_size(u64::MAX), "16777216.0 TiB");
    }
}
