//! The reconcile core against real SQLite and MariaDB: what each resource writes, that
//! re-applying changes nothing, ownership conflicts, and idempotent deletion.

mod common;

use postbay_api::{
    DkimAlgorithm, DkimKeySpec, MailAliasSpec, MailDomainSpec, MailboxSpec, SecretKeyRef,
};
use postbay_reconcile::dkim::KeyMaterial;
use postbay_reconcile::{
    alias, dkim, domain, mailbox, Blocked, Change, DkimPrivateKey, Outcome, Owner,
};
use postbay_store::{Recipient, Resolution, Store};
use sqlx::Row;

fn domain_spec(name: &str) -> MailDomainSpec {
    MailDomainSpec {
        domain: name.into(),
        catch_all: None,
        dmarc: None,
        mta_sts: None,
        spam_filter: None,
    }
}

fn mailbox_spec(address: &str, aliases: &[&str]) -> MailboxSpec {
    MailboxSpec {
        address: address.into(),
        password_secret_ref: SecretKeyRef {
            name: "passwords".into(),
            key: "x".into(),
        },
        quota: Some("1Gi".into()),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        enabled: true,
        send_as: Vec::new(),
        sending_limits: None,
    }
}

fn applied(change: Change) -> Outcome {
    Outcome::Applied(change)
}

async fn alias_rows(store: &Store) -> Vec<(String, String, String)> {
    sqlx::query("SELECT address, destination, owner FROM aliases ORDER BY address, destination")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("address"), r.get("destination"), r.get("owner")))
        .collect()
}

#[tokio::test]
async fn domains_are_owned_and_conflicts_change_nothing() {
    for t in common::stores().await {
        let store = &t.store;
        let a = Owner::new("team-a", "example");
        let b = Owner::new("team-b", "example");
        let mut spec = domain_spec("example.test");

        assert_eq!(
            domain::apply(store, &a, &spec).await.unwrap(),
            applied(Change::Created),
            "{}",
            t.name
        );
        assert_eq!(
            domain::apply(store, &a, &spec).await.unwrap(),
            applied(Change::Unchanged)
        );
        spec.catch_all = Some("bucket".into());
        assert_eq!(
            domain::apply(store, &a, &spec).await.unwrap(),
            applied(Change::Updated)
        );

        // Another namespace claims the same domain: Conflict, and the row stays as it was.
        let other = domain_spec("example.test");
        assert_eq!(
            domain::apply(store, &b, &other).await.unwrap(),
            Outcome::Blocked(Blocked::Conflict {
                what: "domain example.test".into(),
                owner: "team-a/example".into()
            })
        );
        let row = store.domain("example.test").await.unwrap().unwrap();
        assert_eq!(row.owner.as_deref(), Some("team-a/example"));
        assert_eq!(row.catch_all.as_deref(), Some("bucket"));

        // The loser going away must not take the winner's row with it.
        assert!(!domain::delete(store, &b, "example.test").await.unwrap());
        assert!(store.domain("example.test").await.unwrap().is_some());
        assert!(domain::delete(store, &a, "example.test").await.unwrap());
        assert!(
            !domain::delete(store, &a, "example.test").await.unwrap(),
            "already gone is fine"
        );
        // Now the other side may have it.
        assert_eq!(
            domain::apply(store, &b, &other).await.unwrap(),
            applied(Change::Created)
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn mailboxes_hash_once_follow_password_changes_and_own_their_aliases() {
    for t in common::stores().await {
        let store = &t.store;
        let ns = "mail";
        let owner = Owner::new(ns, "alice");
        let spec = mailbox_spec("Alice@Example.test", &["postmaster@example.test"]);

        assert_eq!(
            mailbox::apply(store, &owner, &spec, b"pw1").await.unwrap(),
            Outcome::Blocked(Blocked::DomainNotFound {
                domain: "example.test".into()
            }),
            "{}",
            t.name
        );
        domain::apply(
            store,
            &Owner::new("elsewhere", "d"),
            &domain_spec("example.test"),
        )
        .await
        .unwrap();
        assert_eq!(
            mailbox::apply(store, &owner, &spec, b"pw1").await.unwrap(),
            Outcome::Blocked(Blocked::DomainInOtherNamespace {
                domain: "example.test".into(),
                owner: "elsewhere/d".into()
            })
        );
        assert!(store.mailbox("alice@example.test").await.unwrap().is_none());
        domain::delete(store, &Owner::new("elsewhere", "d"), "example.test")
            .await
            .unwrap();
        domain::apply(
            store,
            &Owner::new(ns, "example"),
            &domain_spec("example.test"),
        )
        .await
        .unwrap();

        assert_eq!(
            mailbox::apply(store, &owner, &spec, b"pw1\n")
                .await
                .unwrap(),
            applied(Change::Created)
        );
        let row = store.mailbox("alice@example.test").await.unwrap().unwrap();
        assert!(
            row.password_hash.starts_with("{ARGON2ID}$argon2id$"),
            "{}",
            row.password_hash
        );
        assert!(postbay_passwd::verify(b"pw1", &row.password_hash).unwrap());
        assert_eq!(row.quota_bytes, 1 << 30);
        assert!(row.enabled);
        assert_eq!(row.owner.as_deref(), Some("mail/alice"));
        assert_eq!(
            alias_rows(store).await,
            [(
                "postmaster@example.test".into(),
                "alice@example.test".into(),
                "Mailbox:mail/alice".into()
            )]
        );
        assert_eq!(
            store.resolve("postmaster@example.test").await.unwrap(),
            Resolution::Deliver(vec![Recipient::Local("alice@example.test".into())])
        );

        // Same password: the hash is kept, nothing is written.
        assert_eq!(
            mailbox::apply(store, &owner, &spec, b"pw1").await.unwrap(),
            applied(Change::Unchanged)
        );
        assert_eq!(
            store
                .mailbox("alice@example.test")
                .await
                .unwrap()
                .unwrap()
                .password_hash,
            row.password_hash
        );

        // A changed Secret: the hash follows.
        assert_eq!(
            mailbox::apply(store, &owner, &spec, b"pw2").await.unwrap(),
            applied(Change::Updated)
        );
        let changed = store.mailbox("alice@example.test").await.unwrap().unwrap();
        assert!(postbay_passwd::verify(b"pw2", &changed.password_hash).unwrap());
        assert!(!postbay_passwd::verify(b"pw1", &changed.password_hash).unwrap());

        // A hash in the Secret is stored as given; aliases dropped from the spec go away.
        let hash = postbay_passwd::hash(b"pw3", postbay_passwd::Scheme::Sha512Crypt).unwrap();
        let mut spec2 = mailbox_spec("alice@example.test", &[]);
        spec2.quota = None;
        spec2.enabled = false;
        assert_eq!(
            mailbox::apply(store, &owner, &spec2, hash.as_bytes())
                .await
                .unwrap(),
            applied(Change::Updated)
        );
        let row = store.mailbox("alice@example.test").await.unwrap().unwrap();
        assert_eq!(row.password_hash, hash);
        assert_eq!(row.quota_bytes, 0);
        assert!(!row.enabled);
        assert!(alias_rows(store).await.is_empty());

        // Another owner cannot take the address, nor use alice's aliases.
        let mallory = Owner::new(ns, "mallory");
        assert!(matches!(
            mailbox::apply(
                store,
                &mallory,
                &mailbox_spec("alice@example.test", &[]),
                b"x"
            )
            .await
            .unwrap(),
            Outcome::Blocked(Blocked::Conflict { .. })
        ));

        assert!(mailbox::delete(store, &mallory, "alice@example.test")
            .await
            .is_ok());
        assert!(store.mailbox("alice@example.test").await.unwrap().is_some());
        assert!(mailbox::delete(store, &owner, "alice@example.test")
            .await
            .unwrap());
        assert!(store.mailbox("alice@example.test").await.unwrap().is_none());
        assert!(!mailbox::delete(store, &owner, "alice@example.test")
            .await
            .unwrap());
        t.cleanup().await;
    }
}

#[tokio::test]
async fn aliases_follow_their_spec_and_do_not_collide_with_mailbox_aliases() {
    for t in common::stores().await {
        let store = &t.store;
        let ns = "mail";
        domain::apply(
            store,
            &Owner::new(ns, "example"),
            &domain_spec("example.test"),
        )
        .await
        .unwrap();
        let alice = Owner::new(ns, "team");
        mailbox::apply(
            store,
            &alice,
            &mailbox_spec("alice@example.test", &["info@example.test"]),
            b"pw",
        )
        .await
        .unwrap();

        // A MailAlias named like the Mailbox: different owner strings, no interference.
        let team = Owner::new(ns, "team");
        let mut spec = MailAliasSpec {
            address: "team@example.test".into(),
            destinations: vec!["alice@example.test".into(), "Far@Remote.test".into()],
        };
        assert_eq!(
            alias::apply(store, &team, &spec).await.unwrap(),
            applied(Change::Created),
            "{}",
            t.name
        );
        assert_eq!(
            alias::apply(store, &team, &spec).await.unwrap(),
            applied(Change::Unchanged)
        );
        assert_eq!(
            store.resolve("team@example.test").await.unwrap(),
            Resolution::Deliver(vec![
                Recipient::Local("alice@example.test".into()),
                Recipient::Remote("far@remote.test".into())
            ])
        );
        // Renamed address: the old rows go.
        spec.address = "crew@example.test".into();
        spec.destinations = vec!["alice@example.test".into()];
        assert_eq!(
            alias::apply(store, &team, &spec).await.unwrap(),
            applied(Change::Updated)
        );
        assert_eq!(
            alias_rows(store).await,
            [
                (
                    "crew@example.test".into(),
                    "alice@example.test".into(),
                    "mail/team".into()
                ),
                (
                    "info@example.test".into(),
                    "alice@example.test".into(),
                    "Mailbox:mail/team".into()
                ),
            ]
        );
        // The Mailbox's alias address is held.
        let grab = MailAliasSpec {
            address: "info@example.test".into(),
            destinations: vec!["x@remote.test".into()],
        };
        assert_eq!(
            alias::apply(store, &Owner::new(ns, "grab"), &grab)
                .await
                .unwrap(),
            Outcome::Blocked(Blocked::Conflict {
                what: "alias info@example.test".into(),
                owner: "Mailbox:mail/team".into()
            })
        );
        // Unknown domain.
        let stray = MailAliasSpec {
            address: "x@nowhere.test".into(),
            destinations: vec!["alice@example.test".into()],
        };
        assert!(matches!(
            alias::apply(store, &team, &stray).await.unwrap(),
            Outcome::Blocked(Blocked::DomainNotFound { .. })
        ));

        assert!(alias::delete(store, &team).await.unwrap());
        assert!(!alias::delete(store, &team).await.unwrap());
        assert_eq!(
            alias_rows(store).await.len(),
            1,
            "the Mailbox's alias stays"
        );
        t.cleanup().await;
    }
}

#[tokio::test]
async fn dkim_keys_store_the_public_half_and_a_reference() {
    for t in common::stores().await {
        let store = &t.store;
        let owner = Owner::new("mail", "example-2026");
        let spec = DkimKeySpec {
            domain: "example.test".into(),
            selector: "s2026".into(),
            algorithm: DkimAlgorithm::Ed25519Sha256,
            secret_ref: None,
        };
        let material = KeyMaterial {
            key: DkimPrivateKey::generate(DkimAlgorithm::Ed25519Sha256).unwrap(),
            private_key_ref: "secret:mail/example-2026-dkim/private.key".into(),
        };
        assert!(matches!(
            dkim::apply(store, &owner, &spec, &material).await.unwrap(),
            Outcome::Blocked(Blocked::DomainNotFound { .. })
        ));
        domain::apply(
            store,
            &Owner::new("mail", "example"),
            &domain_spec("example.test"),
        )
        .await
        .unwrap();
        assert_eq!(
            dkim::apply(store, &owner, &spec, &material).await.unwrap(),
            applied(Change::Created),
            "{}",
            t.name
        );
        assert_eq!(
            dkim::apply(store, &owner, &spec, &material).await.unwrap(),
            applied(Change::Unchanged)
        );
        let rows = store.dkim_keys("example.test").await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].algorithm, "ed25519-sha256");
        assert_eq!(
            rows[0].public_key,
            material.key.public_key_base64().unwrap()
        );
        assert_eq!(
            rows[0].private_key_ref,
            "secret:mail/example-2026-dkim/private.key"
        );
        assert_eq!(rows[0].owner.as_deref(), Some("mail/example-2026"));

        // A key of the wrong algorithm is an error, not a silent mismatch.
        let rsa_spec = DkimKeySpec {
            algorithm: DkimAlgorithm::RsaSha256,
            ..spec.clone()
        };
        assert!(dkim::apply(store, &owner, &rsa_spec, &material)
            .await
            .is_err());
        // Another resource on the same selector conflicts.
        assert!(matches!(
            dkim::apply(store, &Owner::new("mail", "copy"), &spec, &material)
                .await
                .unwrap(),
            Outcome::Blocked(Blocked::Conflict { .. })
        ));
        assert!(dkim::delete(store, &owner, "example.test", "s2026")
            .await
            .unwrap());
        assert!(!dkim::delete(store, &owner, "example.test", "s2026")
            .await
            .unwrap());
        assert!(store.dkim_keys("example.test").await.unwrap().is_empty());
        t.cleanup().await;
    }
}
