//! `hookgate serve`: the secrets, the flags made into a [`hookgate::gateway::Gateway`], and the
//! signals that stop it.

use std::{io::Write as _, net::SocketAddr, path::Path, process::ExitCode};

use hookgate::gateway::GatewayHandle;

use crate::{
    cli::ServeArgs,
    secrets::{self, Source, DEV_SECRET_FILE},
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
        let expired = secrets.expired(std::time::SystemTime::now());
        if expired > 0 {
            tracing::warn!(
                expired,
                source = %secrets.source,
                "some webhook secrets have already expired: they verify nothing, remove them"
            );
        }
    }
    let gateway = args
        .gateway(secrets.scheme()?)?
        .build()
        .map_err(|e| e.to_string())?
        .serve()
        .await
        .map_err(|e| e.to_string())?;
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
