//! `hookgate serve`: the secrets, the flags made into a [`hookgate::gateway::Gateway`], and the
//! signals that stop it.

use std::{io::Write as _, net::SocketAddr, path::Path, process::ExitCode, time::SystemTime};

use hookgate::gateway::GatewayHandle;

use crate::{
    cli::ServeArgs,
    secrets::{self, Source, DEV_SECRET_FILE},
    units::{self, human},
};

pub(crate) async fn run(args: ServeArgs) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("hookgate serve: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let secrets = secrets::load_or_create_development(&args.secrets)?;
    if secrets.is_development() {
        tracing::warn!(
            "NO WEBHOOK SECRET CONFIGURED: using the development secret in {DEV_SECRET_FILE} ({}). \
             `hookgate send` signs with it. Set ELEVENLABS_WEBHOOK_SECRET to your webhook's secret \
             before receiving real deliveries.",
            if secrets.source == Source::DevCreated { "just created" } else { "from an earlier run" }
        );
    } else {
        tracing::info!(secrets = secrets.len(), source = %secrets.source, "webhook secrets loaded");
        let now = SystemTime::now();
        for (position, expires) in secrets.expiries() {
            match expires.duration_since(now) {
                Ok(left) => tracing::info!(
                    source = %secrets.source,
                    "webhook secret #{position} expires in {}", units::human(left)
                ),
                Err(past) => tracing::warn!(
                    source = %secrets.source,
                    "webhook secret #{position} expired {} ago: it verifies nothing, remove it",
                    units::human(past.duration())
                ),
            }
        }
    }
    tracing::info!("{}", settings_summary(&args));
    let gateway = args
        .gateway(secrets.scheme()?)?
        .build()
        .map_err(|e| e.to_string())?
        .serve()
        .await
        .map_err(|e| e.to_string())?;
    for line in exposure(gateway.local_addr(), "--listen") {
        tracing::info!("{line}");
    }
    if let Some(admin) = gateway.admin_addr() {
        if admin.ip().is_unspecified() {
            tracing::warn!(
                "the admin listener ({admin}) is on every interface: /metrics is for operators \
                 only, bind it to loopback or an internal address"
            );
        }
    }
    if let Some(path) = &args.ready_file {
        if let Err(error) = write_ready_file(path, &gateway) {
            let message = format!("cannot write --ready-file {}: {error}", path.display());
            gateway.shutdown().await;
            return Err(message);
        }
    }
    shutdown_signal().await;
    gateway.shutdown().await;
    Ok(())
}

/// The limits and deadlines in force, in human units, for the startup log.
fn settings_summary(args: &ServeArgs) -> String {
    let mut summary = format!(
        "limits: bodies up to {} within {}, signatures up to {} old, request heads within {}, \
         idle connections closed after {}, shutdown grace {}",
        units::human_size(args.max_body_bytes as u64),
        human(args.body_timeout),
        human(args.tolerance),
        human(args.request_head_timeout),
        human(args.idle_timeout),
        human(args.shutdown_grace),
    );
    if args.upstream.is_some() {
        summary.push_str(&format!(
            ", upstream connect within {} and answer within {}",
            human(args.upstream_connect_timeout),
            human(args.upstream_timeout)
        ));
    }
    if !args.no_dedupe && (args.upstream.is_some() || args.redis_url.is_some()) {
        summary.push_str(&format!(", deduplication for {}", human(args.dedupe_ttl)));
    }
    if args.max_failures_per_minute > 0 {
        summary.push_str(&format!(
            ", failing clients blocked for {}",
            human(args.failure_cooldown)
        ));
    }
    if args.redis_url.is_some() {
        summary.push_str(&format!(
            ", Redis calls within {}",
            human(args.redis_timeout)
        ));
    }
    summary
}

/// Where the gateway can be reached from, for the startup log: on loopback, that other machines
/// cannot reach it and how to change that.
pub(crate) fn exposure(local: SocketAddr, flag: &str) -> Vec<String> {
    let mut lines = vec![format!("listening on {local}")];
    if local.ip().is_loopback() {
        lines.push(format!(
            "{local} is loopback: only this machine can reach it. To receive from ElevenLabs, \
             put a reverse proxy on this machine in front of it, or listen on every interface \
             with {flag} 0.0.0.0:{port} (or [::]:{port})",
            port = local.port()
        ));
    } else if local.ip().is_unspecified() {
        lines.push(format!(
            "{local} is every interface: other machines can reach port {}",
            local.port()
        ));
    }
    lines
}

/// Writes the addresses the gateway got to `path` as one JSON object, whole or not at all (a
/// temp file renamed into place), so a reader never sees half of it.
fn write_ready_file(path: &Path, gateway: &GatewayHandle) -> std::io::Result<()> {
    let ready = serde_json::json!({
        "listen": gateway.local_addr().to_string(),
        "admin": gateway.admin_addr().as_ref().map(SocketAddr::to_string),
        "url": gateway.url(),
    });
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(format!("{ready}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_says_how_to_expose_it() {
        let lines = exposure("127.0.0.1:8080".parse().unwrap(), "--listen");
        assert_eq!(lines[0], "listening on 127.0.0.1:8080");
        assert!(lines[1].contains("only this machine"), "{lines:?}");
        assert!(lines[1].contains("--listen 0.0.0.0:8080"), "{lines:?}");
        let lines = exposure("0.0.0.0:8080".parse().unwrap(), "--listen");
        assert!(lines[1].contains("every interface"), "{lines:?}");
        let lines = exposure("192.0.2.1:443".parse().unwrap(), "--listen");
        assert_eq!(lines, ["listening on 192.0.2.1:443"]);
    }
}
