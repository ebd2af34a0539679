//! End to end, operations: where the gateway's settings come from (only the working directory's
//! `.env`, or `--env-file`, each setting attributed in the log without its value), and
//! rejections in the log (at info, with their problem code and client, aggregated per interval).
#![cfg(feature = "cli")]

mod common;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use common::{
    gateway::{exchange, post, sign, transcript, Gateway, SECRET},
    hookgate, now, scratch_dir,
};
use hookgate::scheme::ElevenLabs;
use http::{Request, StatusCode};
use http_body_util::Full;

const SECRET_ENV: &str = "ELEVENLABS_WEBHOOK_SECRET";

/// `root/parent/child/workdir`, created; (parent, workdir).
fn tree() -> (PathBuf, PathBuf) {
    let parent = scratch_dir().join("parent");
    let workdir = parent.join("child").join("workdir");
    std::fs::create_dir_all(&workdir).unwrap();
    (parent, workdir)
}

/// The gateway in `dir` with `args`, without the secret in its environment.
fn start_without_secret_env(dir: &Path, args: &[&str]) -> Result<Gateway, Vec<String>> {
    let mut command = Gateway::command(dir, args);
    command.env_remove(SECRET_ENV);
    Gateway::try_spawn(command)
}

fn signed_with(secret: &str, body: &str) -> Option<String> {
    Some(
        ElevenLabs::new(secret)
            .unwrap()
            .sign(now(), body.as_bytes()),
    )
}

fn assert_never_logged(gateway: &Gateway, values: &[&str]) {
    for line in gateway.logs() {
        for value in values {
            assert!(!line.contains(value), "{value:?} logged: {line}");
        }
    }
}

fn lines_with(gateway: &Gateway, parts: &[&str]) -> Vec<String> {
    gateway
        .logs()
        .into_iter()
        .filter(|line| parts.iter().all(|part| line.contains(part)))
        .collect()
}

#[tokio::test]
async fn a_dotenv_in_a_parent_directory_is_not_read() {
    let (parent, workdir) = tree();
    let parent_secret = "parent-secret-never-used-7d41";
    std::fs::write(
        parent.join(".env"),
        format!("{SECRET_ENV}={parent_secret}\n"),
    )
    .unwrap();

    let gateway = start_without_secret_env(&workdir, &[]).expect("the gateway starts");
    let logs = gateway.logs().join("\n");
    assert!(logs.contains("NO WEBHOOK SECRET CONFIGURED"), "{logs}");
    assert!(!logs.contains("webhook secrets loaded"), "{logs}");
    let parent_file = parent.join(".env").canonicalize().unwrap();
    assert!(
        logs.contains(&format!("not reading {}", parent_file.display())),
        "{logs}"
    );

    // The parent's secret is refused; the development secret, created in the working
    // directory, signs.
    let body = transcript("req_parent_env");
    let answer = post(
        &gateway.url(),
        signed_with(parent_secret, &body),
        body.clone(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.code(), "signature_mismatch");
    let dev_secret = std::fs::read_to_string(workdir.join(".hookgate-dev-secret")).unwrap();
    let answer = post(&gateway.url(), signed_with(dev_secret.trim(), &body), body).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_never_logged(&gateway, &[parent_secret, dev_secret.trim()]);
}

#[tokio::test]
async fn the_working_directorys_dotenv_is_read_and_each_setting_attributed_without_its_value() {
    let (parent, workdir) = tree();
    std::fs::write(
        parent.join(".env"),
        format!("{SECRET_ENV}=parent-secret-never-used-7d41\n"),
    )
    .unwrap();
    let secret = "workdir-secret-3e1f9c";
    std::fs::write(
        workdir.join(".env"),
        format!(
            "# settings\n{SECRET_ENV}={secret}\nHOOKGATE_SINK_DIR=stored\n\
             HOOKGATE_PATH=/not-here\nHOOKGATE_TOLERANCE=900\n"
        ),
    )
    .unwrap();

    // HOOKGATE_PATH is in the environment too (it wins); --tolerance is on the command line.
    let mut command = Gateway::command(&workdir, &["--tolerance", "1800"]);
    command
        .env_remove(SECRET_ENV)
        .env("HOOKGATE_PATH", "/webhooks/elevenlabs");
    let gateway = Gateway::try_spawn(command).expect("the gateway starts");

    let body = transcript("req_workdir_env");
    let answer = post(&gateway.url(), signed_with(secret, &body), body.clone()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        std::fs::read(workdir.join("stored").join("req_workdir_env.json")).unwrap(),
        body.as_bytes()
    );

    let file = workdir.join(".env").canonicalize().unwrap();
    let from_file = format!("from .env ({})", file.display());
    let logs = gateway.logs().join("\n");
    for expected in [
        format!("{SECRET_ENV} {from_file}"),
        format!("HOOKGATE_SINK_DIR {from_file}"),
        format!(
            "HOOKGATE_PATH from the environment, which wins over .env ({})",
            file.display()
        ),
        format!("HOOKGATE_TOLERANCE {from_file}; unused: --tolerance on the command line wins"),
        format!("settings read from .env ({})", file.display()),
    ] {
        assert!(logs.contains(&expected), "no {expected:?} in\n{logs}");
    }
    assert!(logs.contains("webhook secrets loaded"), "{logs}");
    assert!(!logs.contains("NO WEBHOOK SECRET CONFIGURED"), "{logs}");
    assert_never_logged(&gateway, &[secret, "parent-secret-never-used-7d41"]);
}

#[tokio::test]
async fn an_explicit_env_file_replaces_the_working_directorys_and_must_exist() {
    let (parent, workdir) = tree();
    let conf = parent.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let secret = "explicit-secret-b8e2";
    std::fs::write(
        conf.join("hookgate.env"),
        format!("{SECRET_ENV}={secret}\n"),
    )
    .unwrap();
    std::fs::write(
        workdir.join(".env"),
        format!("{SECRET_ENV}=workdir-not-this-one\n"),
    )
    .unwrap();

    let gateway = start_without_secret_env(&workdir, &["--env-file", "../../conf/hookgate.env"])
        .expect("the gateway starts");
    let body = transcript("req_explicit_env");
    let answer = post(
        &gateway.url(),
        signed_with("workdir-not-this-one", &body),
        body.clone(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = post(&gateway.url(), signed_with(secret, &body), body).await;
    assert_eq!(answer.status, StatusCode::OK);
    let file = conf.join("hookgate.env").canonicalize().unwrap();
    let expected = format!("{SECRET_ENV} from --env-file ({})", file.display());
    assert!(
        gateway.wait_for_log(&[&expected], Duration::ZERO).is_some(),
        "no {expected:?} in {:#?}",
        gateway.logs()
    );
    assert_never_logged(&gateway, &[secret, "workdir-not-this-one"]);
    drop(gateway);

    // The commands that sign read it too.
    let output = hookgate(None)
        .args(["sign", "--timestamp", "1700000000", "--env-file"])
        .arg(conf.join("hookgate.env"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        ElevenLabs::new(secret).unwrap().sign(1_700_000_000, b"")
    );

    // A file named explicitly that is not there is an error, not a fallback.
    let seen = start_without_secret_env(&workdir, &["--env-file", "missing.env"])
        .err()
        .expect("the gateway refuses to start");
    assert!(
        seen.iter()
            .any(|line| line.contains("cannot use --env-file missing.env: no such file")),
        "{seen:#?}"
    );
}

#[tokio::test]
async fn a_flood_of_forgeries_logs_one_line_at_once_and_one_count_per_interval() {
    let gateway = Gateway::spawn(&[
        "--max-failures-per-minute",
        "0",
        "--client-rate",
        "0",
        "--rejection-log-interval",
        "3",
    ]);
    let url = gateway.url();

    // A genuine delivery logs no rejection.
    let body = transcript("req_genuine");
    assert_eq!(
        post(&url, sign(body.as_bytes()), body).await.status,
        StatusCode::OK
    );

    let body = transcript("req_forged");
    let forged = signed_with("not-the-secret", &body).unwrap();
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (url, forged, body) = (url.clone(), forged.clone(), body.clone());
        flood.spawn(async move { post(&url, Some(forged), body).await });
    }
    while let Some(answer) = flood.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.code(), "signature_mismatch");
    }

    let counted = gateway
        .wait_for_log(
            &["49 more rejections", "signature_mismatch", "127.0.0.1"],
            Duration::from_secs(15),
        )
        .unwrap_or_else(|| panic!("no aggregated line in {:#?}", gateway.logs()));
    assert!(counted.contains("INFO"), "{counted}");
    assert!(counted.contains("status=401"), "{counted}");
    // Nothing else comes: one line at once, one count, for the genuine delivery none.
    std::thread::sleep(Duration::from_millis(500));
    let first = lines_with(&gateway, &["webhook rejected"]);
    assert_eq!(first.len(), 1, "{first:#?}");
    for part in [
        "INFO",
        "code=signature_mismatch",
        "status=401",
        "client=127.0.0.1",
    ] {
        assert!(first[0].contains(part), "{part} not in {}", first[0]);
    }
    assert_eq!(
        lines_with(&gateway, &["more rejections"]).len(),
        1,
        "{:#?}",
        gateway.logs()
    );
    let signature = forged.split("v0=").nth(1).unwrap();
    assert_never_logged(&gateway, &[SECRET, signature]);
}

#[tokio::test]
async fn rejections_name_the_client_behind_a_trusted_proxy_and_blocked_clients() {
    let gateway = Gateway::spawn(&[
        "--trusted-proxy",
        "127.0.0.1",
        "--max-failures-per-minute",
        "2",
        "--rejection-log-interval",
        "30",
    ]);
    let body = transcript("req_proxied_forged");
    let forged = signed_with("not-the-secret", &body).unwrap();
    let mut answers = Vec::new();
    for _ in 0..6 {
        let request = Request::post(gateway.url())
            .header("x-forwarded-for", "203.0.113.7")
            .header("elevenlabs-signature", forged.clone())
            .body(Full::new(body.clone().into()))
            .unwrap();
        let answer = exchange(request).await;
        answers.push((answer.code(), answer.status.as_u16()));
    }
    let (first, last) = (answers[0].clone(), answers[5].clone());
    assert_eq!(first.0, "signature_mismatch");
    assert_eq!(last.0, "client_blocked");

    for (code, status) in [first, last] {
        let line = gateway
            .wait_for_log(
                &[
                    "webhook rejected",
                    &format!("code={code}"),
                    "client=203.0.113.7",
                ],
                Duration::from_secs(5),
            )
            .unwrap_or_else(|| panic!("no {code} line in {:#?}", gateway.logs()));
        assert!(line.contains(&format!("status={status}")), "{line}");
    }
    assert!(
        lines_with(&gateway, &["webhook rejected", "127.0.0.1"]).is_empty(),
        "the proxy is not the client: {:#?}",
        gateway.logs()
    );
    assert_eq!(lines_with(&gateway, &["webhook rejected"]).len(), 2);
    let signature = forged.split("v0=").nth(1).unwrap();
    assert_never_logged(&gateway, &[SECRET, signature]);
}
