//! `Stores` against real servers on loopback: a small HTTP file server with Range support
//! (`tiny_http`) and an S3 API over a directory (`s3s-fs`). Both bind 127.0.0.1:0 and stop when
//! the test ends; nothing leaves the machine. The last test runs the whole loader through both.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duet_data::{DataError, S3Config, ShardStore, Stores, sample_count_hint};

/// 300 KiB of a pattern that a misplaced byte would break; streamed in several chunks.
fn shard_bytes() -> Vec<u8> {
    (0..300 * 1024u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// Writes the shard and its img2dataset stats under `dir`.
fn write_fixture(dir: &Path) -> Vec<u8> {
    std::fs::create_dir_all(dir).expect("create fixture dir");
    let bytes = shard_bytes();
    std::fs::write(dir.join("00000.tar"), &bytes).expect("write shard");
    std::fs::write(dir.join("00000_stats.json"), r#"{"successes": 42}"#).expect("write stats");
    bytes
}

/// Opens, sizes, ranges and hints `url` (whose shard is `bytes`), then checks a missing key.
fn check_store(stores: &Stores, url: &str, missing: &str, bytes: &[u8]) {
    let started = Instant::now();
    let mut got = Vec::new();
    stores
        .open(url)
        .expect("open")
        .read_to_end(&mut got)
        .expect("stream to the end");
    assert!(
        got == bytes,
        "streamed {} bytes differ from the {}-byte file",
        got.len(),
        bytes.len()
    );
    assert_eq!(stores.size(url).expect("size"), bytes.len() as u64);
    // The last 10 bytes, and a range across the middle.
    let n = bytes.len() as u64;
    assert_eq!(
        stores.read_range(url, n - 10..n).expect("tail range"),
        &bytes[bytes.len() - 10..]
    );
    assert_eq!(
        stores.read_range(url, 1000..5000).expect("range"),
        &bytes[1000..5000]
    );
    assert_eq!(
        sample_count_hint(stores, url).expect("stats readable"),
        Some(42)
    );
    let err = stores.open(missing).err().expect("missing shard");
    assert!(matches!(err, DataError::ShardNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(missing), "{err}");
    let err = stores.size(missing).expect_err("missing shard");
    assert!(err.to_string().contains(missing), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "loopback requests took too long"
    );
}

/// Serves files under `root` on 127.0.0.1:0 with `Range: bytes=a-b` support; stops on drop.
struct HttpServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    base: String,
}

impl HttpServer {
    fn start(root: PathBuf) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind loopback"));
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let serving = Arc::clone(&server);
        let thread = std::thread::spawn(move || {
            for request in serving.incoming_requests() {
                let response = respond(&root, &request);
                request.respond(response).expect("write response");
            }
        });
        Self {
            server,
            thread: Some(thread),
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread ends cleanly");
        }
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name, value).expect("valid header")
}

fn respond(
    root: &Path,
    request: &tiny_http::Request,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let path = root.join(request.url().trim_start_matches('/'));
    let Ok(data) = std::fs::read(&path) else {
        return tiny_http::Response::from_string("not found").with_status_code(404);
    };
    let range = request.headers().iter().find(|h| h.field.equiv("Range"));
    let Some(range) = range else {
        // A Content-Length, not chunked encoding: object_store requires one.
        return tiny_http::Response::from_data(data).with_chunked_threshold(usize::MAX);
    };
    // `bytes=a-b`, inclusive, as object_store sends it.
    let spec = range.value.as_str().trim_start_matches("bytes=");
    let (a, b) = spec.split_once('-').expect("a-b range");
    let a: usize = a.parse().expect("range start");
    let b: usize = b.parse::<usize>().expect("range end").min(data.len() - 1);
    let content_range = format!("bytes {a}-{b}/{}", data.len());
    tiny_http::Response::from_data(data[a..=b].to_vec())
        .with_chunked_threshold(usize::MAX)
        .with_status_code(206)
        .with_header(header("Content-Range", &content_range))
}

#[test]
fn http_open_size_range_and_404() {
    let root = tempfile::tempdir().expect("temp dir");
    let bytes = write_fixture(&root.path().join("shards"));
    let server = HttpServer::start(root.path().to_path_buf());
    let stores = Stores::new(S3Config::new()).expect("stores");
    let url = format!("{}/shards/00000.tar", server.base);
    let missing = format!("{}/shards/99999.tar", server.base);
    check_store(&stores, &url, &missing, &bytes);
}

/// `s3s-fs` over `root` (buckets are its subdirectories) on 127.0.0.1:0; stops on drop.
struct S3Server {
    runtime: Option<tokio::runtime::Runtime>,
    endpoint: String,
}

const ACCESS_KEY: &str = "duet-test-access";
const SECRET_KEY: &str = "duet-test-secret";

impl S3Server {
    fn start(root: &Path) -> Self {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        let mut builder = s3s::service::S3ServiceBuilder::new(
            s3s_fs::FileSystem::new(root).expect("s3s-fs over the temp dir"),
        );
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let port = listener.local_addr().expect("bound address").port();
        runtime.spawn(async move {
            let http = Builder::new(TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(conn);
            }
        });
        Self {
            runtime: Some(runtime),
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

#[test]
fn s3_open_size_range_and_missing_key() {
    let root = tempfile::tempdir().expect("temp dir");
    let bytes = write_fixture(&root.path().join("bucket").join("laion"));
    let server = S3Server::start(root.path());
    let config = S3Config::new()
        .with("aws_endpoint", server.endpoint.as_str())
        .and_then(|c| c.with("aws_region", "us-east-1"))
        .and_then(|c| c.with("aws_access_key_id", ACCESS_KEY))
        .and_then(|c| c.with("aws_secret_access_key", SECRET_KEY))
        .expect("known options");
    let stores = Stores::new(config).expect("stores");
    check_store(
        &stores,
        "s3://bucket/laion/00000.tar",
        "s3://bucket/laion/00001.tar",
        &bytes,
    );

    // A wrong secret: the error names the URL and carries the S3 status.
    let config = S3Config::new()
        .with("aws_endpoint", server.endpoint.as_str())
        .and_then(|c| c.with("aws_region", "us-east-1"))
        .and_then(|c| c.with("aws_access_key_id", ACCESS_KEY))
        .and_then(|c| c.with("aws_secret_access_key", "wrong"))
        .expect("known options");
    let stores = Stores::new(config).expect("stores");
    let err = stores
        .open("s3://bucket/laion/00000.tar")
        .err()
        .expect("denied");
    let msg = err.to_string();
    assert!(
        msg.contains("s3://bucket/laion/00000.tar") && msg.contains("403"),
        "{msg}"
    );
}

/// The bundled training shards, batched by a shuffling loader from `spec` through `stores`:
/// (keys, image bits, tokens) per batch of one exact epoch.
fn batches_through(spec: &str, stores: Stores) -> Vec<(Vec<String>, Vec<u32>, Vec<u32>)> {
    use duet_data::{
        AutoReader, ImageTransformConfig, Loader, LoaderConfig, LoaderSource, TextTokenizer,
        TokenizerConfig, TrainTransformConfig, WeightedShard, parse_spec,
    };
    let parsed = parse_spec(spec, None).expect("spec");
    let source = LoaderSource {
        shards: WeightedShard::from_spec(&parsed),
        format: Arc::new(AutoReader::for_urls(parsed.shards()).expect("tar")),
        store: Arc::new(stores),
    };
    let transform = ImageTransformConfig::Train(TrainTransformConfig {
        image_size: 16,
        ..TrainTransformConfig::default()
    });
    let config = LoaderConfig {
        shuffle_buffer: 100,
        readers: 2,
        decode_threads: 2,
        epochs: Some(1),
        ..LoaderConfig::train(64, 5, transform)
    };
    let tokenizer = TextTokenizer::bundled(TokenizerConfig::default()).expect("tokenizer");
    Loader::start(&config, source, tokenizer, None)
        .expect("starts")
        .map(|b| {
            let b = b.expect("a batch");
            (
                b.keys,
                b.images.iter().map(|v| v.to_bits()).collect(),
                b.tokens,
            )
        })
        .collect()
}

#[test]
fn same_batches_from_local_http_and_s3() {
    // The same three img2dataset shards on disk, behind HTTP and behind S3.
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/sample/train");
    let root = tempfile::tempdir().expect("temp dir");
    for dir in ["shards", "bucket/train"] {
        let dir = root.path().join(dir);
        std::fs::create_dir_all(&dir).expect("create dir");
        for shard in ["00000.tar", "00001.tar", "00002.tar"] {
            std::fs::copy(sample.join(shard), dir.join(shard)).expect("copy shard");
        }
    }
    let local_spec = format!("{}/{{00000..00002}}.tar", sample.display());
    let local = batches_through(&local_spec, Stores::new(S3Config::new()).expect("stores"));
    // 1,188 samples in batches of 64: 18 full batches, the rest dropped.
    assert_eq!(local.len(), 18);

    let http = HttpServer::start(root.path().to_path_buf());
    let http_spec = format!("{}/shards/{{00000..00002}}.tar", http.base);
    let via_http = batches_through(&http_spec, Stores::new(S3Config::new()).expect("stores"));
    assert!(via_http == local, "http batches differ from local ones");

    let s3 = S3Server::start(root.path());
    let config = S3Config::new()
        .with("aws_endpoint", s3.endpoint.as_str())
        .and_then(|c| c.with("aws_region", "us-east-1"))
        .and_then(|c| c.with("aws_access_key_id", ACCESS_KEY))
        .and_then(|c| c.with("aws_secret_access_key", SECRET_KEY))
        .expect("known options");
    let via_s3 = batches_through(
        "s3://bucket/train/{00000..00002}.tar",
        Stores::new(config).expect("stores"),
    );
    assert!(via_s3 == local, "s3 batches differ from local ones");
}
