mod common;

use std::collections::HashSet;

use postbay_store::blobs::bytes_owned::Part;
use postbay_store::directory::MailboxSpec;
use postbay_store::NewMessage;
use postbay_store::{DomainRow, Recipient, Resolution, Store};

async fn seed(store: &Store) {
    store
        .put_domain(&DomainRow {
            name: "example.test".into(),
            catch_all: None,
            enabled: true,
            owner: None,
        })
        .await
        .unwrap();
    store
        .put_domain(&DomainRow {
            name: "catch.test".into(),
            catch_all: Some("bucket".into()),
            enabled: true,
            owner: None,
        })
        .await
        .unwrap();
    for address in [
        "alice@example.test",
        "bob@example.test",
        "bucket@catch.test",
    ] {
        postbay_testkit::seed_mailbox(store, address, "{PLAIN}x").await;
    }
    store
        .set_alias(
            "team@example.test",
            &[
                "alice@example.test".into(),
                "bob@example.test".into(),
                "far@remote.test".into(),
            ],
            Some("ns/team"),
        )
        .await
        .unwrap();
    store
        .set_alias("loop1@example.test", &["loop2@example.test".into()], None)
        .await
        .unwrap();
    store
        .set_alias("loop2@example.test", &["loop1@example.test".into()], None)
        .await
        .unwrap();
}

fn message(body: &str, key: Option<&str>) -> NewMessage {
    NewMessage {
        parts: vec![Part::Owned(
            format!("Subject: t\r\n\r\n{body}\r\n").into_bytes(),
        )],
        internal_date: 1_700_000_000,
        flags: vec![],
        delivery_key: key.map(str::to_string),
    }
}

#[tokio::test]
async fn resolution_follows_mailboxes_aliases_plus_and_catch_all() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        let local = |a: &str| Recipient::Local(a.to_string());
        assert_eq!(
            s.resolve("alice@example.test").await.unwrap(),
            Resolution::Deliver(vec![local("alice@example.test")]),
            "{}",
            t.name
        );
        assert_eq!(
            s.resolve("Alice@Example.TEST").await.unwrap(),
            Resolution::Deliver(vec![local("alice@example.test")]),
            "{}",
            t.name
        );
        assert_eq!(
            s.resolve("alice+news@example.test").await.unwrap(),
            Resolution::Deliver(vec![local("alice@example.test")]),
            "{}",
            t.name
        );
        assert_eq!(
            s.resolve("nobody@example.test").await.unwrap(),
            Resolution::Unknown,
            "{}",
            t.name
        );
        assert_eq!(
            s.resolve("x@elsewhere.test").await.unwrap(),
            Resolution::NonLocalDomain,
            "{}",
            t.name
        );
        assert_eq!(
            s.resolve("anyone@catch.test").await.unwrap(),
            Resolution::Deliver(vec![local("bucket@catch.test")]),
            "{}",
            t.name
        );
        assert_eq!(
            s.resolve("team@example.test").await.unwrap(),
            Resolution::Deliver(vec![
                local("alice@example.test"),
                local("bob@example.test"),
                Recipient::Remote("far@remote.test".into())
            ]),
            "{}",
            t.name
        );
        assert_eq!(
            s.resolve("loop1@example.test").await.unwrap(),
            Resolution::Unknown,
            "{}",
            t.name
        );
        // Replacing an alias's destinations replaces the set.
        s.set_alias(
            "team@example.test",
            &["bob@example.test".into()],
            Some("ns/team"),
        )
        .await
        .unwrap();
        assert_eq!(
            s.resolve("team@example.test").await.unwrap(),
            Resolution::Deliver(vec![local("bob@example.test")]),
            "{}",
            t.name
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn deliveries_get_ascending_uids_and_keys_deduplicate() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        let first = s
            .deliver(
                "alice@example.test",
                "INBOX",
                message("one", Some("q1:alice")),
            )
            .await
            .unwrap();
        let second = s
            .deliver(
                "alice@example.test",
                "INBOX",
                message("two", Some("q2:alice")),
            )
            .await
            .unwrap();
        let again = s
            .deliver(
                "alice@example.test",
                "INBOX",
                message("one", Some("q1:alice")),
            )
            .await
            .unwrap();
        assert_eq!((first.uid, first.duplicate), (1, false), "{}", t.name);
        assert_eq!((second.uid, second.duplicate), (2, false), "{}", t.name);
        assert_eq!((again.uid, again.duplicate), (1, true), "{}", t.name);
        assert_eq!(
            s.count_messages("alice@example.test", "INBOX")
                .await
                .unwrap(),
            2,
            "{}",
            t.name
        );
        let mb = s.mailbox("alice@example.test").await.unwrap().unwrap();
        let folder = s.folder(mb.id, "INBOX").await.unwrap().unwrap();
        let msgs = s.messages(folder.id).await.unwrap();
        let body = s.blobs().read(&msgs[1].blob_path).await.unwrap();
        assert!(String::from_utf8(body).unwrap().contains("two"));
        let names: Vec<_> = s
            .folders(mb.id)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        for wanted in ["INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"] {
            assert!(names.iter().any(|n| n == wanted), "{}: {names:?}", t.name);
        }
        t.cleanup().await;
    }
}

#[tokio::test]
async fn concurrent_deliveries_never_share_a_uid() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        // Two independent store handles stand in for two replicas on one database.
        let mut tasks = Vec::new();
        for i in 0..60 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.deliver(
                    "bob@example.test",
                    "INBOX",
                    message(&format!("m{i}"), Some(&format!("q{i}:bob"))),
                )
                .await
                .unwrap()
            }));
        }
        let mut uids = HashSet::new();
        for task in tasks {
            assert!(
                uids.insert(task.await.unwrap().uid),
                "{}: duplicate uid",
                t.name
            );
        }
        assert_eq!(uids.len(), 60);
        assert_eq!(
            *uids.iter().max().unwrap(),
            60,
            "{}: uids are dense 1..=60",
            t.name
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn quota_is_enforced() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        s.put_mailbox(&MailboxSpec {
            address: "small@example.test".into(),
            password_hash: "{PLAIN}x".into(),
            quota_bytes: 100,
            enabled: true,
            owner: None,
        })
        .await
        .unwrap();
        s.deliver("small@example.test", "INBOX", message("fits", None))
            .await
            .unwrap();
        let err = s
            .deliver(
                "small@example.test",
                "INBOX",
                message(&"x".repeat(200), None),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, postbay_store::Error::OverQuota { .. }),
            "{}: {err}",
            t.name
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn sending_rights_round_trip_and_sender_addresses_include_aliases() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        let sending = postbay_store::Sending {
            send_as: vec!["News@Example.test".into(), "@catch.test".into()],
            max_messages_per_hour: Some(2),
            max_recipients_per_hour: None,
        };
        assert!(s
            .set_mailbox_sending(
                "alice@example.test",
                Some("{SCRAM-SHA-256}4096,c2FsdA==,a,b"),
                &sending
            )
            .await
            .unwrap());
        let row = s.mailbox("alice@example.test").await.unwrap().unwrap();
        assert_eq!(
            row.scram_sha256.as_deref(),
            Some("{SCRAM-SHA-256}4096,c2FsdA==,a,b"),
            "{}",
            t.name
        );
        assert_eq!(
            row.sending.send_as,
            ["news@example.test", "@catch.test"],
            "{}",
            t.name
        );
        assert_eq!(row.sending.max_messages_per_hour, Some(2), "{}", t.name);
        assert_eq!(row.sending.max_recipients_per_hour, None, "{}", t.name);
        let senders = s.sender_addresses(&row).await.unwrap();
        assert!(
            senders.contains(&"news@example.test".to_string()),
            "{}: {senders:?}",
            t.name
        );
        assert!(
            senders.contains(&"@catch.test".to_string()),
            "{}: {senders:?}",
            t.name
        );
        assert!(
            !senders.contains(&"alice@example.test".to_string()),
            "the login itself is not listed"
        );
        assert!(!s
            .set_mailbox_sending("nobody@example.test", None, &sending)
            .await
            .unwrap());
        t.cleanup().await;
    }
}

#[tokio::test]
async fn greylisting_waits_then_passes_and_forgets_after_its_lifetime() {
    use postbay_store::greylist::Grey;
    for t in common::stores().await {
        let s = &t.store;
        let (delay, life) = (300, 86_400);
        assert_eq!(
            s.greylist("a", 1000, delay, life).await.unwrap(),
            Grey::Wait(300),
            "{}",
            t.name
        );
        assert_eq!(
            s.greylist("a", 1100, delay, life).await.unwrap(),
            Grey::Wait(200),
            "{}",
            t.name
        );
        assert_eq!(
            s.greylist("b", 1100, delay, life).await.unwrap(),
            Grey::Wait(300),
            "{}",
            t.name
        );
        assert_eq!(
            s.greylist("a", 1300, delay, life).await.unwrap(),
            Grey::Pass,
            "{}",
            t.name
        );
        assert_eq!(
            s.greylist("a", 1301, delay, life).await.unwrap(),
            Grey::Pass,
            "{}",
            t.name
        );
        // Seen within its lifetime it stays passed; not seen for longer, it waits again.
        assert_eq!(
            s.greylist("a", 1301 + life, delay, life).await.unwrap(),
            Grey::Pass,
            "{}",
            t.name
        );
        assert_eq!(
            s.greylist("a", 1302 + 2 * life + 1, delay, life)
                .await
                .unwrap(),
            Grey::Wait(300),
            "{}",
            t.name
        );
        assert_eq!(
            s.greylist_prune(2000).await.unwrap(),
            1,
            "b is old: {}",
            t.name
        );
    }
}

/// Replicas greylisting the same triplet at the same moment (a sender's retry reaching two
/// filters) both get an answer: on InnoDB, `INSERT IGNORE` then `SELECT ... FOR UPDATE`
/// let two transactions hold the row shared and both wait for it exclusive (a deadlock,
/// error 1213); the upsert takes it exclusive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greylisting_the_same_triplet_from_two_replicas_at_once_never_deadlocks() {
    use postbay_store::greylist::Grey;
    for t in common::stores().await {
        let replica = postbay_store::Store::open(&t.url, &t.dir.path().join("mail"))
            .await
            .unwrap();
        for round in 0..40i64 {
            let triplet = format!("t{round}");
            let (x, y, z) = tokio::join!(
                t.store.greylist(&triplet, 1000, 300, 86_400),
                replica.greylist(&triplet, 1000, 300, 86_400),
                t.store.greylist(&triplet, 1000, 300, 86_400),
            );
            for verdict in [x, y, z] {
                assert_eq!(verdict.unwrap(), Grey::Wait(300), "{}", t.name);
            }
            let (x, y) = tokio::join!(
                t.store.greylist(&triplet, 1300, 300, 86_400),
                replica.greylist(&triplet, 1300, 300, 86_400),
            );
            assert_eq!(x.unwrap(), Grey::Pass, "{}", t.name);
            assert_eq!(y.unwrap(), Grey::Pass, "{}", t.name);
        }
        replica.close().await;
        t.cleanup().await;
    }
}

#[tokio::test]
async fn domain_filter_overrides_are_set_replaced_cleared_and_go_with_the_domain() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        s.put_domain_filter("Example.TEST", Some(r#"{"addHeader":3}"#))
            .await
            .unwrap();
        s.put_domain_filter("catch.test", Some(r#"{"reject":9}"#))
            .await
            .unwrap();
        s.put_domain_filter("catch.test", Some(r#"{"reject":8}"#))
            .await
            .unwrap();
        let mut got = s
            .domain_filters(&[
                "example.test".into(),
                "CATCH.test".into(),
                "none.test".into(),
            ])
            .await
            .unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("catch.test".to_string(), r#"{"reject":8}"#.to_string()),
                ("example.test".to_string(), r#"{"addHeader":3}"#.to_string()),
            ],
            "{}",
            t.name
        );
        s.put_domain_filter("catch.test", None).await.unwrap();
        assert!(s.delete_domain("example.test").await.unwrap(), "{}", t.name);
        let left = s
            .domain_filters(&["example.test".into(), "catch.test".into()])
            .await
            .unwrap();
        assert!(left.is_empty(), "{}: {left:?}", t.name);
    }
}

/// Two replicas learning different messages in one scope at once (users moving mail into
/// Junk on two IMAP replicas) both count; `INSERT IGNORE` then `FOR UPDATE` on the totals
/// row deadlocked them on MariaDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bayes_learning_from_two_replicas_at_once_never_deadlocks() {
    use postbay_store::bayes::{Learned, GLOBAL_SCOPE};
    for t in common::stores().await {
        let replica = postbay_store::Store::open(&t.url, &t.dir.path().join("mail"))
            .await
            .unwrap();
        let scope = 777;
        for round in 0..20u64 {
            let (a, b, c) = (
                format!("<a{round}>"),
                format!("<b{round}>"),
                format!("<c{round}>"),
            );
            let (spam, ham, global) = ([round, 1000], [round, 2000], [round]);
            let (x, y, z) = tokio::join!(
                t.store.bayes_learn(scope, &a, &spam, true),
                replica.bayes_learn(scope, &b, &ham, false),
                t.store.bayes_learn(GLOBAL_SCOPE, &c, &global, true),
            );
            for learned in [x, y, z] {
                assert_eq!(learned.unwrap(), Learned::New, "{}", t.name);
            }
        }
        assert_eq!(
            t.store.bayes_totals(scope).await.unwrap(),
            (20, 20),
            "{}",
            t.name
        );
        replica.close().await;
        t.cleanup().await;
    }
}

#[tokio::test]
async fn bayes_scopes_count_apart_and_make_their_totals_row() {
    use postbay_store::bayes::{Learned, GLOBAL_SCOPE};
    for t in common::stores().await {
        let s = &t.store;
        let domain = 424_242;
        assert_eq!(s.bayes_totals(domain).await.unwrap(), (0, 0), "{}", t.name);
        assert_eq!(
            s.bayes_learn(domain, "d:<m1>", &[10, 11], true)
                .await
                .unwrap(),
            Learned::New,
            "{}",
            t.name
        );
        assert_eq!(
            s.bayes_learn(GLOBAL_SCOPE, "<m1>", &[20], false)
                .await
                .unwrap(),
            Learned::New,
            "{}",
            t.name
        );
        assert_eq!(
            s.bayes_learn(domain, "d:<m1>", &[10, 11], false)
                .await
                .unwrap(),
            Learned::Relearned,
            "{}",
            t.name
        );
        assert_eq!(s.bayes_totals(domain).await.unwrap(), (0, 1), "{}", t.name);
        assert_eq!(
            s.bayes_totals(GLOBAL_SCOPE).await.unwrap(),
            (0, 1),
            "{}",
            t.name
        );
        assert_eq!(
            s.bayes_counts(&[10, 20]).await.unwrap(),
            vec![(0, 1), (0, 1)],
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn rate_limits_count_to_the_limit_slide_and_count_concurrent_replicas() {
    use postbay_store::ratelimit::Bucket;
    for t in common::stores().await {
        let s = &t.store;
        let b = |id: &str, limit| Bucket {
            id: id.to_string(),
            period: 100,
            limit,
        };
        let (a, other) = (b("a", 2), b("other", 2));
        // Two in the window pass, the third is over and not counted.
        for now in [1000, 1010] {
            assert!(
                s.ratelimit(std::slice::from_ref(&a), now)
                    .await
                    .unwrap()
                    .is_empty(),
                "{}",
                t.name
            );
        }
        assert_eq!(
            s.ratelimit(std::slice::from_ref(&a), 1020).await.unwrap(),
            vec![0],
            "{}",
            t.name
        );
        // Over in one bucket: counted in none of the message's buckets.
        assert_eq!(
            s.ratelimit(&[other.clone(), a.clone()], 1030)
                .await
                .unwrap(),
            vec![1],
            "{}",
            t.name
        );
        // The next window still weighs the previous one: at 1100 it counts fully (2 + 1 > 2),
        // halfway (1150) half (1 + 1 = 2 passes), then 1 + 2 > 2.
        assert_eq!(
            s.ratelimit(std::slice::from_ref(&a), 1100).await.unwrap(),
            vec![0],
            "{}",
            t.name
        );
        assert!(
            s.ratelimit(std::slice::from_ref(&a), 1150)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            t.name
        );
        assert_eq!(
            s.ratelimit(std::slice::from_ref(&a), 1150).await.unwrap(),
            vec![0],
            "{}",
            t.name
        );
        // A whole window later, it passes again.
        assert!(
            s.ratelimit(std::slice::from_ref(&a), 1300)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            t.name
        );
        assert!(
            s.ratelimit(std::slice::from_ref(&other), 1300)
                .await
                .unwrap()
                .is_empty(),
            "{}",
            t.name
        );
        assert_eq!(
            s.ratelimit_prune(1300).await.unwrap(),
            2,
            "a's windows at 1000 and 1100 are over: {}",
            t.name
        );
        // Two replicas counting at once both count.
        let replica = postbay_store::Store::open(&t.url, &t.dir.path().join("mail"))
            .await
            .unwrap();
        let c = b("c", 1000);
        for round in 0..20 {
            let (x, y) = tokio::join!(
                s.ratelimit(std::slice::from_ref(&c), 5000 + round),
                replica.ratelimit(std::slice::from_ref(&c), 5000 + round)
            );
            assert!(x.unwrap().is_empty() && y.unwrap().is_empty(), "{}", t.name);
        }
        let two = b("c", 40);
        assert_eq!(
            s.ratelimit(std::slice::from_ref(&two), 5050).await.unwrap(),
            vec![0],
            "40 counted: {}",
            t.name
        );
        let one_more = b("c", 41);
        assert!(
            s.ratelimit(&[one_more], 5050).await.unwrap().is_empty(),
            "{}",
            t.name
        );
        replica.close().await;
        t.cleanup().await;
    }
}
