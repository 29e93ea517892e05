use super::*;

#[test]
fn address_ranges_of_both_families() {
    let c = |s: &str| Cidr::parse(s).unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(c("10.0.0.0/8").contains(ip("10.255.1.2")));
    assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
    assert!(c("192.168.1.7").contains(ip("192.168.1.7")));
    assert!(!c("192.168.1.7").contains(ip("192.168.1.8")));
    assert!(c("0.0.0.0/0").contains(ip("8.8.8.8")));
    assert!(c("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
    assert!(!c("2001:db8::/32").contains(ip("2001:db9::1")));
    assert!(c("::1").contains(ip("::1")));
    // An IPv4 client seen through a dual-stack socket.
    assert!(c("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
    assert!(!c("10.0.0.0/8").contains(ip("2001:db8::1")));
    for bad in ["10.0.0.0/33", "::/129", "10.0.0", "x/8", "10.0.0.0/-1"] {
        assert!(Cidr::parse(bad).is_none(), "{bad}");
    }
    assert_eq!(c("10.1.0.0/16").to_string(), "10.1.0.0/16");
    // An IPv4 range in IPv4-mapped form is the IPv4 range; `::/0` is every address.
    assert!(c("::ffff:203.0.113.0/120").contains(ip("203.0.113.9")));
    assert!(c("::ffff:203.0.113.0/120").contains(ip("::ffff:203.0.113.9")));
    assert!(!c("::ffff:203.0.113.0/120").contains(ip("203.0.114.1")));
    assert!(c("::/0").contains(ip("8.8.8.8")) && c("::/0").contains(ip("2001:db8::1")));
}

#[test]
fn secrets_are_long_random_and_recognisable() {
    let a = new_secret().unwrap();
    let b = new_secret().unwrap();
    assert_ne!(a, b);
    assert!(a.starts_with(SECRET_PREFIX) && a.len() == SECRET_PREFIX.len() + 32);
    assert!(a[SECRET_PREFIX.len()..]
        .bytes()
        .all(|c| c.is_ascii_alphanumeric()));
    assert!(new_id("key").unwrap().starts_with("key_"));
}

#[test]
fn the_index_follows_every_change_of_the_store() {
    let t = Tenancy::open(&Location::Sqlite(None)).unwrap();
    assert!(t.is_empty());
    let team = t
        .store()
        .create_team(NewTeam {
            name: "a".into(),
            models: Some(vec!["gpt".into(), "openai/*".into()]),
            ips: None,
        })
        .unwrap();
    let (key, secret) = t
        .store()
        .create_key(NewKey {
            name: "k".into(),
            team: team.id.clone(),
            models: Some(vec!["gpt".into(), "claude".into()]),
            ..Default::default()
        })
        .unwrap();
    let hash = crate::config::hash_key(secret.as_bytes());
    // Not in the request path's view before the refresh that follows every change.
    assert!(t.lookup(&hash).is_none());
    t.refresh().unwrap();
    let (entry, previous) = t.lookup(&hash).unwrap();
    assert!(!previous);
    assert_eq!(entry.key.id, key.id);
    assert!(entry.usable(false, store_now_ms()).is_ok());
    // Within both the team's list and the key's.
    assert!(entry.allows(crate::config::Names::one("gpt")));
    assert!(
        !entry.allows(crate::config::Names::one("claude")),
        "the key cannot widen its team"
    );
    assert!(
        !entry.allows(crate::config::Names::one("openai/gpt-4o")),
        "the key narrowed it"
    );
    assert!(entry.allows_address(None), "no address rule");

    let (_, newer) = t.store().rotate_key(&key.id, 60_000).unwrap();
    t.refresh().unwrap();
    let (old, previous) = t.lookup(&hash).unwrap();
    assert!(previous);
    assert!(old.usable(true, store_now_ms()).is_ok());
    assert_eq!(
        old.usable(true, store_now_ms() + 61_000),
        Err(Refusal::Rotated)
    );
    let (now, previous) = t
        .lookup(&crate::config::hash_key(newer.as_bytes()))
        .unwrap();
    assert!(!previous && now.usable(false, store_now_ms() + 61_000).is_ok());

    t.store().revoke_key(&key.id).unwrap();
    t.refresh().unwrap();
    let (entry, _) = t
        .lookup(&crate::config::hash_key(newer.as_bytes()))
        .unwrap();
    assert_eq!(entry.usable(false, store_now_ms()), Err(Refusal::Revoked));
    assert!(matches!(
        t.store().rotate_key(&key.id, 0),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn a_store_newer_than_the_binary_is_refused() {
    let dir = std::env::temp_dir().join(format!("junction-store-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("store.sqlite");
    drop(Store::open(&Location::Sqlite(Some(path.clone()))).unwrap());
    // Opened again: already at the current version, nothing to do.
    drop(Store::open(&Location::Sqlite(Some(path.clone()))).unwrap());
    let db = rusqlite::Connection::open(&path).unwrap();
    db.pragma_update(None, "user_version", 99).unwrap();
    drop(db);
    let e = Store::open(&Location::Sqlite(Some(path.clone())))
        .err()
        .expect("refused");
    assert!(e.to_string().contains("newer than this Junction"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_damaged_list_in_the_store_allows_nothing() {
    let dir = std::env::temp_dir().join(format!("junction-store-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("store.sqlite");
    let t = Tenancy::open(&Location::Sqlite(Some(path.clone()))).unwrap();
    let team = t
        .store()
        .create_team(NewTeam {
            name: "a".into(),
            ..Default::default()
        })
        .unwrap();
    let (key, secret) = t
        .store()
        .create_key(NewKey {
            name: "k".into(),
            team: team.id,
            models: Some(vec!["gpt".into()]),
            ips: Some(vec![Cidr::parse("10.0.0.0/8").unwrap()]),
            ..Default::default()
        })
        .unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute(
        "UPDATE keys SET models = '[\"gpt\"', ips = 'nonsense' WHERE id = ?1",
        [&key.id],
    )
    .unwrap();
    t.refresh().unwrap();
    let (entry, _) = t
        .lookup(&crate::config::hash_key(secret.as_bytes()))
        .unwrap();
    assert!(!entry.allows(crate::config::Names::one("gpt")));
    assert!(!entry.allows_address("10.1.1.1".parse().ok()));
    let _ = std::fs::remove_dir_all(dir);
}
