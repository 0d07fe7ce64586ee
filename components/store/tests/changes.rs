//! The change feed and write path: local commits wake watchers at once, another replica's
//! commits arrive through the poller, deleted folders read as gone, no-op writes wake
//! nobody, expunging by flag removes exactly the `\Deleted` messages, writes from a stale
//! view lose nothing, and an expunged blob goes only after the expunge is flushed.

mod common;

use std::time::Duration;

use postbay_store::blobs::bytes_owned::Part;
use postbay_store::{FlagChange, NewMessage};
use postbay_store::{Store, Version};

async fn seed(store: &Store) {
    postbay_testkit::seed_domain(store, "example.test").await;
    postbay_testkit::seed_mailbox(store, "alice@example.test", "{PLAIN}x").await;
}

fn message(i: usize) -> NewMessage {
    NewMessage {
        parts: vec![Part::Owned(
            format!("Subject: {i}\r\n\r\nbody {i}\r\n").into_bytes(),
        )],
        internal_date: 1_700_000_000,
        flags: vec![],
        delivery_key: None,
    }
}

/// Adds `flag` to the messages `uids` of `folder`.
async fn add_flag(store: &Store, folder: i64, uids: &[i64], flag: &str) {
    store
        .store_flags(folder, uids, FlagChange::Add, &[flag.to_string()], None)
        .await
        .expect("STORE");
}

/// Delivers `n` messages to alice's INBOX; their UIDs.
async fn deliver_uids(store: &Store, n: usize) -> Vec<i64> {
    let mut uids = Vec::with_capacity(n);
    for i in 0..n {
        let delivered = store
            .deliver("alice@example.test", "INBOX", message(i))
            .await
            .expect("delivery");
        uids.push(delivered.uid);
    }
    uids
}

/// The mailbox's recorded usage is exactly the size of the messages left in `folder`.
async fn assert_quota_matches(store: &Store, folder: i64, backend: &str) {
    let used = store
        .mailbox("alice@example.test")
        .await
        .expect("mailbox")
        .expect("alice exists")
        .used_bytes;
    let remaining: i64 = store
        .messages(folder)
        .await
        .expect("messages")
        .iter()
        .map(|m| m.size)
        .sum();
    assert_eq!(used, remaining, "{backend}");
}

async fn inbox(store: &Store) -> postbay_store::FolderInfo {
    let mailbox = store
        .mailbox("alice@example.test")
        .await
        .expect("mailbox")
        .expect("alice exists");
    store
        .folder(mailbox.id, "INBOX")
        .await
        .expect("folder")
        .expect("INBOX exists")
}

#[tokio::test]
async fn local_commits_wake_watchers_and_noops_do_not() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        let folder = inbox(s).await;
        let mut watch = s.watch_folder(folder.id, folder.highest_modseq);
        assert_eq!(watch.current(), Version::At(folder.highest_modseq));

        let delivered = s
            .deliver("alice@example.test", "INBOX", message(1))
            .await
            .expect("deliver");
        tokio::time::timeout(Duration::from_secs(1), watch.changed())
            .await
            .unwrap_or_else(|_| panic!("{}: delivery did not wake the watcher", t.name));
        assert_eq!(watch.current(), Version::At(delivered.modseq), "{}", t.name);

        // A STORE that changes nothing gives its modseq back: no wake-up.
        let update = s
            .store_flags(
                folder.id,
                &[delivered.uid],
                FlagChange::Remove,
                &["\\Seen".into()],
                None,
            )
            .await
            .expect("store flags");
        assert!(update.changed.is_empty());
        assert!(
            tokio::time::timeout(Duration::from_millis(200), watch.changed())
                .await
                .is_err(),
            "{}: a no-op STORE woke the watcher",
            t.name
        );
        assert_eq!(watch.current(), Version::At(delivered.modseq));
        t.cleanup().await;
    }
}

#[tokio::test]
async fn another_replicas_commits_arrive_through_the_poller() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        let folder = inbox(s).await;
        let replica = Store::open(&t.url, &t.dir.path().join("mail"))
            .await
            .unwrap();
        let mut watch = s.watch_folder(folder.id, folder.highest_modseq);

        let delivered = replica
            .deliver("alice@example.test", "INBOX", message(2))
            .await
            .expect("deliver");
        // Nothing in this process wrote: only a poll can tell.
        s.poll_changes().await.expect("poll changes");
        assert_eq!(watch.current(), Version::At(delivered.modseq), "{}", t.name);

        // The background poller does the same on its own.
        s.set_change_poll_interval(Duration::from_millis(50));
        let flagged = replica
            .store_flags(
                folder.id,
                &[delivered.uid],
                FlagChange::Add,
                &["\\Seen".into()],
                None,
            )
            .await
            .expect("store flags");
        let modseq = flagged.changed[0].modseq;
        tokio::time::timeout(Duration::from_secs(5), async {
            while watch.current() != Version::At(modseq) {
                watch.changed().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{}: poller never saw the other replica's STORE", t.name));

        replica
            .delete_folder(folder.id)
            .await
            .expect("delete folder");
        s.poll_changes().await.expect("poll changes");
        assert_eq!(watch.current(), Version::Gone, "{}", t.name);
        replica.close().await;
        t.cleanup().await;
    }
}

#[tokio::test]
async fn expunge_deleted_removes_exactly_the_deleted_messages() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        let folder = inbox(s).await;
        let uids = deliver_uids(s, 6).await;
        // \Deleted on 1, 2, 4 (mixed case, as clients may send it); a look-alike keyword on 3.
        add_flag(s, folder.id, &[uids[1], uids[4]], "\\Deleted").await;
        add_flag(s, folder.id, &[uids[2]], "\\DELETED").await;
        add_flag(s, folder.id, &[uids[3]], "NotDeleted").await;

        // Only among the given UIDs first.
        let first = s
            .expunge_deleted(folder.id, Some(&[uids[0], uids[1]]))
            .await
            .expect("expunge deleted");
        assert_eq!(first.uids, vec![uids[1]], "{}", t.name);
        // Among UIDs that are not contiguous: 3 is NotDeleted, 5 not flagged at all.
        let gapped = s
            .expunge_deleted(folder.id, Some(&[uids[2], uids[3], uids[5]]))
            .await
            .expect("expunge deleted");
        assert_eq!(gapped.uids, vec![uids[2]], "{}", t.name);
        let rest = s
            .expunge_deleted(folder.id, None)
            .await
            .expect("expunge deleted");
        assert_eq!(rest.uids, vec![uids[4]], "{}", t.name);
        assert!(rest.modseq > gapped.modseq && gapped.modseq > first.modseq);
        let left: Vec<i64> = s
            .messages(folder.id)
            .await
            .expect("messages")
            .iter()
            .map(|m| m.uid)
            .collect();
        assert_eq!(left, vec![uids[0], uids[3], uids[5]], "{}", t.name);
        let changes = s
            .folder_changes(folder.id, 0, rest.modseq.unwrap())
            .await
            .expect("folder changes");
        assert_eq!(
            changes.expunged,
            vec![uids[1], uids[2], uids[4]],
            "{}",
            t.name
        );

        // The quota freed exactly what was removed.
        assert_quota_matches(s, folder.id, t.name).await;

        // Nothing left to expunge: no new modseq.
        let none = s
            .expunge_deleted(folder.id, None)
            .await
            .expect("expunge deleted");
        assert!(none.uids.is_empty() && none.modseq.is_none());
        t.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stores_on_one_message_lose_no_flag() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        let folder = inbox(s).await;
        let uid = s
            .deliver("alice@example.test", "INBOX", message(0))
            .await
            .expect("deliver")
            .uid;
        // Forty writers, each adding its own keyword to the same message at once: every
        // read-then-write race must end with all forty keywords present.
        let mut tasks = Vec::new();
        for i in 0..40 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.store_flags(folder.id, &[uid], FlagChange::Add, &[format!("k{i}")], None)
                    .await
                    .expect("store flags")
            }));
        }
        let mut modseqs = Vec::new();
        for task in tasks {
            let update = task.await.unwrap();
            assert_eq!(
                update.changed.len(),
                1,
                "{}: each STORE changed the message",
                t.name
            );
            modseqs.push(update.changed[0].modseq);
        }
        let meta = s.messages(folder.id).await.expect("messages").remove(0);
        for i in 0..40 {
            assert!(
                meta.flags.contains(&format!("k{i}")),
                "{}: keyword k{i} was lost: {:?}",
                t.name,
                meta.flags
            );
        }
        modseqs.sort_unstable();
        modseqs.dedup();
        assert_eq!(
            modseqs.len(),
            40,
            "{}: every change got its own modseq",
            t.name
        );
        assert_eq!(meta.modseq, *modseqs.last().unwrap());
        t.cleanup().await;
    }
}

#[tokio::test]
async fn writes_from_known_state_survive_stale_knowledge() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        let folder = inbox(s).await;
        let uids = deliver_uids(s, 3).await;
        // What a session knew before another session flagged message 0.
        let known: Vec<postbay_store::FlagState> = s
            .messages(folder.id)
            .await
            .expect("messages")
            .iter()
            .map(postbay_store::FlagState::from)
            .collect();
        add_flag(s, folder.id, &[uids[0]], "$Important").await;
        // The stale view says message 0 has no flags; the keyword set meanwhile survives.
        let update = s
            .store_flags_known(
                folder.id,
                known.clone(),
                FlagChange::Add,
                &["\\Seen".into()],
                None,
            )
            .await
            .expect("store flags known");
        assert_eq!(update.changed.len(), 3, "{}", t.name);
        let now = s.messages(folder.id).await.expect("messages");
        assert_eq!(
            now[0].flags,
            vec!["$Important".to_string(), "\\Seen".to_string()],
            "{}",
            t.name
        );
        assert!(now[1..]
            .iter()
            .all(|m| m.flags == vec!["\\Seen".to_string()]));

        // EXPUNGE from a stale view: message 1 is believed \Deleted but is not (the flag was
        // never set), message 2 is; only message 2 goes, and its quota is freed.
        add_flag(s, folder.id, &[uids[2]], "\\Deleted").await;
        let gone = s
            .expunge_flagged(folder.id, &[uids[1], uids[2]])
            .await
            .expect("expunge flagged");
        assert_eq!(gone.uids, vec![uids[2]], "{}", t.name);
        let left: Vec<i64> = s
            .messages(folder.id)
            .await
            .expect("messages")
            .iter()
            .map(|m| m.uid)
            .collect();
        assert_eq!(left, vec![uids[0], uids[1]], "{}", t.name);
        assert_quota_matches(s, folder.id, t.name).await;
        let changes = s
            .folder_changes(folder.id, 0, gone.modseq.expect("the expunge has a modseq"))
            .await
            .expect("folder changes");
        assert_eq!(changes.expunged, vec![uids[2]], "{}", t.name);
        // QRESYNC's VANISHED (EARLIER): everything expunged after a modseq, and nothing
        // after the expunge's own.
        let modseq = gone.modseq.expect("the expunge has a modseq");
        assert_eq!(
            s.expunged_since(folder.id, modseq - 1)
                .await
                .expect("expunged since"),
            vec![uids[2]],
            "{}",
            t.name
        );
        assert!(
            s.expunged_since(folder.id, modseq)
                .await
                .expect("expunged since")
                .is_empty(),
            "{}",
            t.name
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn an_expunged_blob_goes_once_the_expunge_is_on_disk() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        let folder = inbox(s).await;
        let uid = s
            .deliver("alice@example.test", "INBOX", message(0))
            .await
            .expect("deliver")
            .uid;
        let blob = s.messages(folder.id).await.expect("messages")[0]
            .blob_path
            .clone();
        let path = s.blobs().path(&blob);
        assert!(path.exists(), "{}", t.name);
        let gone = s.expunge(folder.id, &[uid]).await.expect("expunge");
        assert_eq!(gone, vec![uid], "{}", t.name);
        // The row is gone at once; the file follows with the next WAL flush (on SQLite,
        // one is scheduled within 50 ms; on MariaDB the commit is the server's, so at once).
        assert!(
            !s.has_message(folder.id, uid).await.expect("has message"),
            "{}",
            t.name
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while path.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!path.exists(), "{}: blob still there after 5 s", t.name);
        t.cleanup().await;
    }
}

/// IMAP NOTIFY's list version (RFC 5465 §5.4, §5.5): CREATE, RENAME, DELETE, SUBSCRIBE and
/// UNSUBSCRIBE through one store handle move the version another handle's watch follows
/// after a poll; subscribing twice or unsubscribing a name not subscribed moves nothing.
#[tokio::test]
async fn list_changes_through_a_replica_reach_a_list_watch() {
    for t in common::stores().await {
        let s = &t.store;
        seed(s).await;
        let mailbox = s
            .mailbox("alice@example.test")
            .await
            .expect("mailbox")
            .expect("alice exists");
        let replica = Store::open(&t.url, &t.dir.path().join("mail"))
            .await
            .unwrap();
        let start = s.list_version(mailbox.id).await.expect("list version");
        let mut watch = s.watch_list(mailbox.id, start);
        assert_eq!(watch.current(), Version::At(start), "{}", t.name);

        let mut expected = start;
        let steps: [(&str, bool); 7] = [
            ("create", true),
            ("rename", true),
            ("subscribe", true),
            ("subscribe again", false),
            ("unsubscribe", true),
            ("unsubscribe again", false),
            ("delete", true),
        ];
        for (step, moves) in steps {
            match step {
                "create" => {
                    replica
                        .create_folder_unique(mailbox.id, "Projects", None)
                        .await
                        .expect("create");
                }
                "rename" => replica
                    .rename_folder(mailbox.id, "Projects", "Work", '/')
                    .await
                    .expect("rename"),
                "subscribe" | "subscribe again" => replica
                    .subscribe(mailbox.id, "Work")
                    .await
                    .expect("subscribe"),
                "unsubscribe" | "unsubscribe again" => {
                    replica
                        .unsubscribe(mailbox.id, "Work")
                        .await
                        .expect("unsubscribe");
                }
                _ => {
                    let work = replica
                        .folder(mailbox.id, "Work")
                        .await
                        .expect("folder")
                        .expect("Work exists");
                    replica.delete_folder(work.id).await.expect("delete");
                }
            }
            s.poll_changes().await.expect("poll changes");
            if moves {
                let now = s.list_version(mailbox.id).await.expect("list version");
                assert!(
                    now > expected,
                    "{}: {step} did not move the version",
                    t.name
                );
                expected = now;
            }
            assert_eq!(watch.current(), Version::At(expected), "{}: {step}", t.name);
        }

        // A change through the watching handle itself arrives without a poll.
        s.create_folder_unique(mailbox.id, "Local", None)
            .await
            .expect("create");
        let Version::At(local) = watch.current() else {
            panic!("{}: list gone", t.name)
        };
        assert!(local > expected, "{}", t.name);
        replica.close().await;
        t.cleanup().await;
    }
}
