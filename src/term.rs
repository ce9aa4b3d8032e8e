//! How numbers read for people, shared by every face (the chat, the
//! commands, the doctor): sizes in binary units as `2.9 MiB`, and how a
//! message came (encrypted, signed).

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

/// ` [encrypted, signed]` and the like after a message in human output
/// (nothing for plain text or an unknown state).
pub fn security_mark(s: Option<pigeon_protocol::pubkey::Security>) -> &'static str {
    use pigeon_protocol::pubkey::Security;
    match s {
        Some(Security::Verified) => " [encrypted, signed]",
        Some(Security::Encrypted) => " [encrypted, unsigned]",
        Some(Security::KeyChanged) => " [encrypted, KEY CHANGED]",
        Some(Security::Plain) | None => "",
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
