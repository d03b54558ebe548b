//! `agentlog users add|remove|list`: SCRAM users over the wire
//! (AlterUserScramCredentials / DescribeUserScramCredentials, KIP-554).
//!
//! The password is salted and iterated here, so only the salted password crosses the
//! network and only keys derived from it are stored. These requests go over plain TCP,
//! so point `--bootstrap` at a PLAINTEXT listener (a loopback one, say).

use std::io::BufRead;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use agentlog_broker::security::credentials::{random_salt, ScramMechanism};

use super::client::ClusterArgs;
use super::raw::Connection;
use super::table::Rows;
use super::OutputArgs;

/// `agentlog users` arguments.
#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Adds a user or changes its password (read from stdin unless --password).
    Add {
        /// User name.
        name: String,
        /// The password; prefer stdin, which keeps it out of the process list.
        #[arg(long)]
        password: Option<String>,
        /// Which SCRAM credentials to store (PLAIN logins accept either).
        #[arg(long, value_enum, default_value_t = Mechanisms::Both)]
        mechanism: Mechanisms,
        /// PBKDF2 iterations (Kafka accepts 4096 to 16384).
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
    },
    /// Removes a user's credentials.
    Remove {
        /// User name.
        name: String,
        /// Which credentials to remove.
        #[arg(long, value_enum, default_value_t = Mechanisms::Both)]
        mechanism: Mechanisms,
    },
    /// Lists users with their mechanisms and iteration counts.
    List,
}

/// `--mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mechanisms {
    /// SCRAM-SHA-256 and SCRAM-SHA-512.
    Both,
    #[value(name = "SCRAM-SHA-256")]
    Sha256,
    #[value(name = "SCRAM-SHA-512")]
    Sha512,
}

impl Mechanisms {
    fn list(self) -> Vec<ScramMechanism> {
        match self {
            Mechanisms::Both => ScramMechanism::ALL.to_vec(),
            Mechanisms::Sha256 => vec![ScramMechanism::Sha256],
            Mechanisms::Sha512 => vec![ScramMechanism::Sha512],
        }
    }
}

/// Runs a `users` subcommand.
pub fn run(args: UsersArgs) -> anyhow::Result<()> {
    let timeout = args.cluster.timeout()?;
    let mut connection = Connection::open(&args.cluster.bootstrap, timeout)?;
    let request = match args.command {
        UsersCommand::List => return list(&mut connection, &args.output),
        UsersCommand::Add {
            name,
            password,
            mechanism,
            iterations,
        } => {
            let password = match password {
                Some(password) => password,
                None => read_password()?,
            };
            anyhow::ensure!(!password.is_empty(), "empty password");
            let iterations_u32 = u32::try_from(iterations)
                .ok()
                .context("--iterations must be positive")?;
            let upsertions = mechanism
                .list()
                .into_iter()
                .map(|mechanism| {
                    let salt = random_salt();
                    let salted =
                        mechanism.salted_password(password.as_bytes(), &salt, iterations_u32);
                    ScramCredentialUpsertion::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_mechanism(mechanism.code())
                        .with_iterations(iterations)
                        .with_salt(salt.into())
                        .with_salted_password(salted.into())
                })
                .collect();
            AlterUserScramCredentialsRequest::default().with_upsertions(upsertions)
        }
        UsersCommand::Remove { name, mechanism } => {
            let deletions = mechanism
                .list()
                .into_iter()
                .map(|mechanism| {
                    ScramCredentialDeletion::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_mechanism(mechanism.code())
                })
                .collect();
            AlterUserScramCredentialsRequest::default().with_deletions(deletions)
        }
    };
    let response = connection.call(&request, 0)?;
    for result in response.results {
        anyhow::ensure!(
            result.error_code == 0,
            "user {}: {} (error code {})",
            result.user,
            result.error_message.as_deref().unwrap_or("refused"),
            result.error_code
        );
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn list(connection: &mut Connection, output: &OutputArgs) -> anyhow::Result<()> {
    let response = connection.call(&DescribeUserScramCredentialsRequest::default(), 0)?;
    anyhow::ensure!(
        response.error_code == 0,
        "{} (error code {})",
        response.error_message.as_deref().unwrap_or("refused"),
        response.error_code
    );
    let mut rows = Rows::new(&["user", "mechanism", "iterations"]);
    for result in response.results {
        for info in result.credential_infos {
            let mechanism = ScramMechanism::from_code(info.mechanism)
                .map_or_else(|| info.mechanism.to_string(), |m| m.name().to_string());
            rows.push(vec![
                json!(result.user.to_string()),
                json!(mechanism),
                json!(info.iterations),
            ]);
        }
    }
    rows.print(output.output);
    Ok(())
}
