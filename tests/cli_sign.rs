//! `hookgate sign`, `hookgate verify` and `hookgate bench` as a user runs them: real processes,
//! bodies on stdin, secrets in the environment or a file.
#![cfg(feature = "cli")]

mod common;

use std::{
    io::Write as _,
    process::{Output, Stdio},
};

use common::{hookgate, now, texts, SECRET};

/// Runs `hookgate` with `args`, `body` on stdin and `secrets` in the environment.
fn run(secrets: Option<&str>, args: &[&str], body: &[u8]) -> Output {
    let mut child = hookgate(secrets)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command refused before it reads stdin (a usage error) closes the pipe early.
    let written = child.stdin.take().unwrap().write_all(body);
    let output = child.wait_with_output().unwrap();
    if output.status.code() != Some(2) {
        written.unwrap();
    }
    output
}

fn sign(secrets: &str, body: &[u8], extra: &[&str]) -> String {
    let output = run(Some(secrets), &[&["sign"], extra].concat(), body);
    let (stdout, stderr) = texts(&output, &secrets.split(',').collect::<Vec<_>>());
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.ends_with('\n'));
    stdout.trim_end().to_owned()
}

/// Exit code, stdout and stderr of `verify --header header`.
fn verify(secrets: &str, header: &str, body: &[u8]) -> (Option<i32>, String, String) {
    let output = run(Some(secrets), &["verify", "--header", header], body);
    let (stdout, stderr) = texts(&output, &secrets.split(',').collect::<Vec<_>>());
    (output.status.code(), stdout, stderr)
}

const VECTOR_BODY: &str = r#"{"type":"speech_to_text_transcription","event_timestamp":1600000000,"data":{"request_id":"req_123","transcription":{"language_code":"en","language_probability":0.98,"text":"Hello world!","words":[]}}}"#;

#[test]
fn sign_reproduces_the_known_test_vector() {
    let header = sign(
        "test_secret",
        VECTOR_BODY.as_bytes(),
        &["--timestamp", "1600000000"],
    );
    assert_eq!(
        header,
        "t=1600000000,v0=14b663348e582d020752c7549318c2bcd4db22edeadf4336d667024ec8f72b0c"
    );
}

#[test]
fn sign_then_verify_round_trip_over_exact_bytes() {
    // A trailing newline and bytes that are not UTF-8 are part of what is signed.
    let body: &[u8] = b"{\"type\":\"x\"}\n\xff\xfe\n";
    let before = now();
    let header = sign(SECRET, body, &[]);
    let t: u64 = header[2..header.find(',').unwrap()].parse().unwrap();
    assert!(t >= before && t <= now());

    let (code, stdout, stderr) = verify(SECRET, &header, body);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with(&format!("valid: signed at t={t} (")),
        "{stdout}"
    );
    assert!(
        stdout.contains("with secret #1 of 1 (ELEVENLABS_WEBHOOK_SECRET)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} body bytes", body.len())),
        "{stdout}"
    );

    // Without the trailing newline it is another body.
    let (code, _, stderr) = verify(SECRET, &header, &body[..body.len() - 1]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("invalid: none of"), "{stderr}");
}

#[test]
fn verify_hints_at_a_trailing_newline() {
    let header = sign(SECRET, b"{}", &[]);
    let (code, _, stderr) = verify(SECRET, &header, b"{}\n");
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("invalid: none of"), "{stderr}");
    assert!(
        stderr.contains("hint: the body on stdin ends with a newline"),
        "{stderr}"
    );
}

#[test]
fn verify_names_the_secret_that_matched_during_a_rotation() {
    let body = VECTOR_BODY.as_bytes();
    let header = sign("old-secret", body, &[]);
    let (code, stdout, stderr) = verify("new-secret,old-secret", &header, body);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("with secret #2 of 2"), "{stdout}");
}

#[test]
fn verify_of_a_tampered_body_says_no_secret_matched() {
    let header = sign(SECRET, VECTOR_BODY.as_bytes(), &[]);
    let tampered = VECTOR_BODY.replace("Hello", "Jello");
    let (code, stdout, stderr) = verify(SECRET, &header, tampered.as_bytes());
    assert_eq!(code, Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr.trim_end(),
        "invalid: none of the 1 configured secret(s) produced any of the 1 signature(s) sent"
    );
}

#[test]
fn verify_of_a_stale_header_says_by_how_much() {
    let signed_at = now() - 3600;
    let header = sign(
        SECRET,
        VECTOR_BODY.as_bytes(),
        &["--timestamp", &signed_at.to_string()],
    );
    let (code, _, stderr) = verify(SECRET, &header, VECTOR_BODY.as_bytes());
    assert_eq!(code, Some(1));
    // In human units: an hour (and the second or two the test took).
    let age = stderr
        .strip_prefix("invalid: the signed timestamp is ")
        .and_then(|rest| rest.split(" old").next())
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(["1h", "1h 1s", "1h 2s"].contains(&age), "{stderr}");
    assert!(
        stderr.contains(" old, more than the 30m tolerance"),
        "{stderr}"
    );

    // A wider tolerance accepts it, in seconds as before or in human units, and says how old
    // the signature is the same way.
    for tolerance in ["7200", "2h", "1h30m"] {
        let output = run(
            Some(SECRET),
            &["verify", "--tolerance", tolerance, "--header", &header],
            VECTOR_BODY.as_bytes(),
        );
        let (stdout, stderr) = texts(&output, &[SECRET]);
        assert!(output.status.success(), "{tolerance}: {stderr}");
        assert!(
            stdout.contains(", 1h ago)") || stdout.contains(", 1h 1s ago)"),
            "{stdout}"
        );
    }
}

#[test]
fn verify_of_a_future_header_says_by_how_much() {
    let header = sign(SECRET, b"{}", &["--timestamp", &(now() + 3600).to_string()]);
    let (code, _, stderr) = verify(SECRET, &header, b"{}");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("ahead of this receiver's clock, more than the 5m allowed skew"),
        "{stderr}"
    );
}

#[test]
fn verify_of_malformed_headers_says_which_element() {
    let v0 = "0".repeat(64);
    let cases = [
        (
            format!("t=12x,v0={v0}"),
            "invalid: the ElevenLabs-Signature header is malformed: the timestamp is not a non-negative whole number of seconds that fits in 64 bits",
        ),
        (
            format!("t={},v0=abc", now()),
            "invalid: the ElevenLabs-Signature header is malformed: signature element 2 has 3 characters, expected 64",
        ),
        (
            format!("t={},,v0={v0}", now()),
            "invalid: the ElevenLabs-Signature header is malformed: element 2 is empty",
        ),
        (
            format!("v0={v0}"),
            "invalid: the ElevenLabs-Signature header is malformed: it has no timestamp element",
        ),
        (
            format!("t={}", now()),
            "invalid: the ElevenLabs-Signature header is malformed: it has no signature of a supported version",
        ),
        (
            format!("t={},v0=", now()),
            "invalid: the ElevenLabs-Signature header is malformed: signature element 2 is empty",
        ),
    ];
    for (header, expected) in cases {
        let (code, _, stderr) = verify(SECRET, &header, b"{}");
        assert_eq!(code, Some(1), "{header}");
        assert_eq!(stderr.trim_end(), expected, "{header}");
    }
}

#[test]
fn without_a_secret_sign_and_verify_refuse_with_status_2() {
    for args in [&["sign"][..], &["verify", "--header", "t=1,v0=00"][..]] {
        let output = run(None, args, b"{}");
        assert_eq!(output.status.code(), Some(2));
        let (stdout, stderr) = texts(&output, &[]);
        assert!(stdout.is_empty());
        assert!(
            stderr.contains("no webhook secret: set ELEVENLABS_WEBHOOK_SECRET"),
            "{stderr}"
        );
    }
    // And there is no flag to pass one on the command line.
    let output = run(None, &["sign", "--secret", SECRET], b"{}");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unexpected argument"));
}

#[test]
fn a_secret_file_signs_and_never_shows() {
    let dir = common::scratch_dir();
    let file = dir.join("secrets");
    std::fs::write(&file, format!("{SECRET}\nprevious-secret\n")).unwrap();
    let path = file.to_str().unwrap();
    let output = run(None, &["sign", "--secret-file", path], b"body");
    let (header, _) = texts(&output, &[SECRET, "previous-secret"]);
    let output = run(
        None,
        &[
            "verify",
            "--secret-file",
            path,
            "--header",
            header.trim_end(),
        ],
        b"body",
    );
    let (stdout, stderr) = texts(&output, &[SECRET, "previous-secret"]);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("with secret #1 of 2 (secret file {path})")),
        "{stdout}"
    );
}

#[test]
fn a_secret_file_may_give_a_secret_an_expiry() {
    let dir = common::scratch_dir();
    let file = dir.join("expiring-secrets");
    let body = VECTOR_BODY.as_bytes();
    let header = sign("old-secret", body, &[]);
    let verify_with = |list: &str| {
        std::fs::write(&file, list).unwrap();
        let path = file.to_str().unwrap();
        let output = run(
            None,
            &["verify", "--secret-file", path, "--header", &header],
            body,
        );
        let (stdout, stderr) = texts(&output, &["new-secret", "old-secret"]);
        (output.status.code(), stdout, stderr)
    };
    // Still live: the old secret verifies, as #2.
    let (code, stdout, stderr) =
        verify_with("new-secret\nold-secret expires=2999-12-31T00:00:00Z\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("with secret #2 of 2"), "{stdout}");
    // Expired: it is not tried, and the hint says so.
    let (code, _, stderr) = verify_with("new-secret\nold-secret expires=2001-01-01T00:00:00Z\n");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("none of the 1 configured secret(s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: 1 of the 2 secrets had expired and were not tried"),
        "{stderr}"
    );
    // A malformed expiry is refused, naming the secret by its place only.
    let (code, _, stderr) = verify_with("new-secret\nold-secret expires=soon\n");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("secret 2: the expiry is not an RFC 3339"),
        "{stderr}"
    );
}

#[test]
fn bench_prints_a_row_per_size() {
    let output = run(
        None,
        &[
            "bench",
            "--allow-debug",
            "--seconds",
            "0.01",
            "--sizes",
            "1024,4KiB",
        ],
        b"",
    );
    let (stdout, stderr) = texts(&output, &[]);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains(", 10ms per measurement"), "{stdout}");
    assert!(stdout.contains("floor MB/s"), "{stdout}");
    assert!(stdout.contains("overhead ns/req"), "{stdout}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows[0].trim_start().starts_with("1 KiB"), "{stdout}");
    assert!(rows[1].trim_start().starts_with("4 KiB"), "{stdout}");
    for row in rows {
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(columns.len(), 6, "{row}");
        let floor: f64 = columns[2].parse().unwrap();
        let hookgate: f64 = columns[3].parse().unwrap();
        assert!(floor > 0.0 && hookgate > 0.0, "{row}");
    }
}

/// The tests usually run a debug build: `bench` refuses it unless told, and says so loudly
/// either way.
#[test]
fn bench_refuses_a_debug_build_unless_allowed_and_warns_loudly() {
    let output = run(
        None,
        &["bench", "--seconds", "10ms", "--sizes", "1KiB"],
        b"",
    );
    if !cfg!(debug_assertions) {
        // A release build (`cargo test --release`) just measures.
        let (stdout, stderr) = texts(&output, &[]);
        assert!(output.status.success(), "{stderr}");
        assert!(
            !stdout.contains("DEBUG") && !stderr.contains("DEBUG"),
            "{stderr}"
        );
        return;
    }
    let (stdout, stderr) = texts(&output, &[]);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    for part in [
        "DEBUG build",
        "refusing to measure",
        "cargo run --release --features cli -- bench",
        "--allow-debug",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }

    let output = run(
        None,
        &[
            "bench",
            "--allow-debug",
            "--seconds",
            "10ms",
            "--sizes",
            "1KiB",
        ],
        b"",
    );
    let (stdout, stderr) = texts(&output, &[]);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("DEBUG BUILD"), "{stdout}");
    // Before the figures and again after them.
    assert_eq!(stderr.matches("MEANINGLESS").count(), 2, "{stderr}");
}

#[test]
fn settings_out_of_range_are_refused_with_usage_errors_not_panics() {
    for args in [
        &["serve", "--upstream-timeout=-1"][..],
        &["serve", "--upstream-connect-timeout", "inf"],
        &["serve", "--upstream-timeout", "NaN"],
        &["bench", "--sizes", "33554433"],
        &["bench", "--sizes", "33MiB"],
        &["bench", "--seconds", "0s"],
    ] {
        let output = run(Some(SECRET), args, b"");
        let (_, stderr) = texts(&output, &[SECRET]);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("invalid value"), "{args:?}: {stderr}");
    }
}
