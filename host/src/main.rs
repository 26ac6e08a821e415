use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use streamhost::admin::registry::{Reference, Registry};
use streamhost::cli::{self, Cli, Command, LogFormat, OffsetsCommand};
use streamhost::job::settings::SettingsError;
use streamhost::runtime::Runtime;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Computed at run time (it asks librdkafka), and leaked once for clap's &'static str.
    let version: &'static str = Box::leak(cli::version_text().into_boxed_str());
    let matches = Cli::command()
        .long_version(version)
        .get_matches_from(cli::with_default_command(std::env::args_os().collect()));
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A bad setting is a usage error, as clap's own are.
        Err(e) if e.downcast_ref::<SettingsError>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run_job(*args),
        Command::Offsets(cmd) => offsets(cmd),
        Command::Produce(a) => {
            let per_partition =
                streamhost::tools::produce::produce(&streamhost::tools::produce::ProduceRequest {
                    brokers: &a.kafka.brokers,
                    overrides: &a.kafka.properties()?,
                    topic: &a.topic,
                    partition: a.partition,
                    input: &a.input,
                    format: a.format,
                    key_field: a.key_field.as_deref(),
                })?;
            let total: usize = per_partition.iter().map(|(_, n)| n).sum();
            let spread: Vec<String> = per_partition
                .iter()
                .map(|(p, n)| format!("{p}:{n}"))
                .collect();
            eprintln!(
                "produced {total} records to {} (partition:records {})",
                a.topic,
                spread.join(" ")
            );
            Ok(())
        }
        Command::Plugin(cmd) => plugin_command(cmd),
        Command::Serve(args) => streamhost::admin::serve(args),
        Command::State(cmd) => streamhost::tools::state::run(cmd),
        Command::Dlq(cmd) => streamhost::tools::dlq::run(cmd),
        Command::Topic(cmd) => streamhost::tools::topic::run(cmd),
        Command::New(a) => {
            let root = streamhost::tools::new::create(a.lang, &a.name, &a.dir)?;
            eprintln!(
                "created {shown}; next: {shown}/build.sh, then host test --plugin {shown}/{name}.wasm --input {shown}/sample.txt",
                shown = root.display(),
                name = a.name
            );
            Ok(())
        }
        Command::Test(args) => {
            streamhost::job::settings::validate_time(&args.time)?;
            let runtime = Runtime::new(args.plugin.runtime_options(&args.sandbox)?)
                .context("starting the WebAssembly runtime")?;
            let plugin = load_plugin(&runtime, &args.plugin.plugin, &args.redis.config())?;
            let report = streamhost::tools::test::run(
                plugin,
                &streamhost::tools::test::TestRun {
                    input: args.input,
                    format: args.format,
                    batch_size: args.batch_size as usize,
                    topic: args.topic,
                    partition: args.partition,
                    config: args.plugin.config,
                    state_scope: args.state_scope,
                    final_watermark: !args.no_final_watermark,
                    time: args.time,
                },
            )?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

fn run_job(args: cli::RunArgs) -> anyhow::Result<()> {
    let stop = streamhost::job::stop_on_signals()?;
    args.settings.validate()?;
    let runtime = Runtime::new(args.plugin.runtime_options(&args.settings.sandbox)?)
        .context("starting the WebAssembly runtime")?;
    let plugin = load_plugin(&runtime, &args.plugin.plugin, &args.redis.config())?;
    let force_group = args.force_group;
    let config = args.into_job(plugin, None)?;
    if !force_group {
        refuse_a_serve_jobs_group(&config)?;
    }
    streamhost::job::run(config, stop)
}

/// A `host run` that would join the group of a `host serve` job running other bytes would
/// take half its partitions and run them through another plugin: refused, unless forced.
fn refuse_a_serve_jobs_group(config: &streamhost::job::JobConfig) -> anyhow::Result<()> {
    let redis = streamhost::store::redis::Redis::new(&config.redis)?;
    let owner = match streamhost::admin::stored_job_in_group(&redis, &config.group) {
        Ok(owner) => owner,
        // Redis may be restarting as the host starts; the job waits for it. Only the check
        // is skipped, and said.
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "could not check whether a `host serve` job owns the group; going on");
            return Ok(());
        }
    };
    let (_, plugin) = config.plugin.current();
    let digest = format!("sha256:{}", plugin.digest().trim_start_matches("sha256:"));
    if let Some(owner) = owner
        && owner.plugin_digest.as_deref().is_some_and(|d| d != digest)
    {
        anyhow::bail!(
            "group {} belongs to `host serve` job {} (plugin {}, {}), and this host runs \
             other bytes ({digest}): two plugins in one group split its partitions between \
             them. Use another --group (and --job), or pass --force-group to join anyway",
            config.group,
            owner.id,
            owner.plugin,
            owner.plugin_digest.unwrap_or_default()
        );
    }
    Ok(())
}

/// `--plugin`: a file, or else a registry reference (NAME, NAME@VERSION, NAME@sha256:…)
/// loaded from the registry in Redis with its digest checked.
fn load_plugin(
    runtime: &Runtime,
    plugin: &std::path::Path,
    redis: &streamhost::store::redis::RedisConfig,
) -> anyhow::Result<streamhost::runtime::Plugin> {
    let as_text = plugin.to_str().unwrap_or_default();
    let looks_like_file = plugin.exists()
        || as_text.contains('/')
        || as_text.ends_with(".wasm")
        || Reference::parse(as_text).is_err();
    if looks_like_file {
        return Ok(runtime.load_file(plugin)?);
    }
    let reference = Reference::parse(as_text)?;
    let registry = Registry::connect(redis)?;
    let (entry, plugin) = registry.load(runtime, &reference).with_context(|| {
        format!(
            "loading plugin {reference} from the registry at {}",
            redis.shown()
        )
    })?;
    tracing::info!(plugin = %reference, version = %entry.version, digest = %entry.digest, "plugin loaded from the registry");
    Ok(plugin)
}

fn plugin_command(cmd: cli::PluginCommand) -> anyhow::Result<()> {
    use cli::PluginCommand;
    let show = |e: &streamhost::admin::registry::Entry| {
        println!("{}@{}\t{}\t{} bytes", e.name, e.version, e.digest, e.size)
    };
    match cmd {
        PluginCommand::Push {
            file,
            name,
            version,
            registry,
            max_upload_mb,
        } => {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("reading plugin file {}", file.display()))?;
            let runtime =
                Runtime::new(Default::default()).context("starting the WebAssembly runtime")?;
            let entry = Registry::connect(&registry.redis.config())?.push(
                &runtime,
                &name,
                version.as_deref(),
                &bytes,
                max_upload_mb << 20,
            )?;
            eprintln!(
                "pushed {} as {}@{}",
                file.display(),
                entry.name,
                entry.version
            );
            println!("{}", entry.digest);
        }
        PluginCommand::List { registry } => Registry::connect(&registry.redis.config())?
            .list()?
            .iter()
            .for_each(show),
        PluginCommand::Show {
            reference,
            registry,
        } => {
            let r = Reference::parse(&reference)?;
            let registry = Registry::connect(&registry.redis.config())?;
            match r {
                Reference::Latest(name) => registry.show(&name)?.iter().for_each(show),
                other => show(&registry.resolve(&other)?),
            }
        }
        PluginCommand::Rm {
            reference,
            registry,
        } => match Reference::parse(&reference)? {
            Reference::Version(name, version) => {
                let redis = streamhost::store::redis::Redis::new(&registry.redis.config())?;
                let reg = Registry::new(std::sync::Arc::new(redis));
                let e = reg.remove(&name, &version, |e| {
                    streamhost::admin::stored_jobs_using(reg.redis(), &reg, e)
                })?;
                eprintln!("removed {}@{} ({})", e.name, e.version, e.digest);
            }
            _ => anyhow::bail!("name the version to remove: host plugin rm NAME@VERSION"),
        },
    }
    Ok(())
}

fn connect(
    t: &cli::OffsetsTarget,
) -> anyhow::Result<(
    streamhost::store::redis::RedisStore,
    streamhost::tools::offsets::Kafka,
)> {
    use streamhost::store::redis::{Redis, RedisStore};
    let redis = std::sync::Arc::new(Redis::new(&t.redis.config())?);
    let job = t.job.as_deref().unwrap_or(&t.group);
    let store = RedisStore::open(redis, &t.group, job, None)?;
    let kafka =
        streamhost::tools::offsets::Kafka::connect(&t.kafka.brokers, &t.kafka.properties()?)?;
    Ok((store, kafka))
}

fn offsets(cmd: OffsetsCommand) -> anyhow::Result<()> {
    use streamhost::tools::offsets::{self, SetRequest, Target};

    let move_offsets = |args: cli::MoveArgs, to: Target| {
        let (store, kafka) = connect(&args.target)?;
        let request = SetRequest {
            group: &args.target.group,
            topic: &args.topic,
            partitions: &args.partitions,
            to,
            force: args.force,
        };
        offsets::set(&store, &kafka, &request)
    };
    match cmd {
        OffsetsCommand::Show {
            target,
            topics,
            json,
        } => {
            let (store, kafka) = connect(&target)?;
            offsets::show(&store, &kafka, &target.group, &topics, json)
        }
        OffsetsCommand::Set { args, to } => move_offsets(args, to),
        OffsetsCommand::Reset { args } => move_offsets(args, Target::Earliest),
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("STREAMHOST_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
