//! A Pod's network on one machine, as a CNI plugin gives it on a node: a network namespace of its
//! own (so each Pod binds its ports, `0.0.0.0:8443` included, without clashing), holding the
//! Pod's IP, reachable from the machine at that IP. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
//!
//! Pod IPs come from [`POD_RANGE`], which [`ensure_pod_range`] routes to the loopback interface
//! as `local` (Linux's "AnyIP"): every address in it is the machine's own, so the API server
//! reaches `<pod IP>:<port>` on the machine, where a relay listens and connects to the same
//! address and port inside the Pod's namespace. The range is not loopback (127/8): the API
//! server refuses loopback addresses in Endpoints. A second relay, inside the Pod's namespace,
//! listens on the API server's loopback address and port and connects to the API server, so a
//! Pod's kubeconfig is the one every local process uses. The namespace goes away with its last
//! process and this value.

use super::LocalError;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The Pod IP range: 198.18.0.0/15 is set aside for network tests (RFC 2544) and is neither
/// loopback nor link-local, which the API server refuses as endpoints.
pub const POD_RANGE: &str = "198.18.0.0/16";

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalError {
    let what = what.into();
    move |source| LocalError::Io { what, source }
}

/// Routes [`POD_RANGE`] to the loopback interface as local addresses (idempotent).
pub fn ensure_pod_range() -> Result<(), LocalError> {
    let output = std::process::Command::new("ip")
        .args(["route", "replace", "local", POD_RANGE, "dev", "lo"])
        .output()
        .map_err(io("running ip route (iproute2)"))?;
    if !output.status.success() {
        return Err(LocalError::Command {
            what: format!("routing {POD_RANGE} to the loopback interface"),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// What the namespace's own thread does for the Pod: sockets made there live in its namespace.
enum Request {
    Listen(SocketAddr, mpsc::Sender<std::io::Result<std::net::TcpListener>>),
    Connect(SocketAddr, mpsc::Sender<std::io::Result<std::net::TcpStream>>),
}

/// A Pod's network namespace, its IP and its relays; dropping it stops the relays.
pub struct PodNetwork {
    /// The Pod's IP.
    pub ip: Ipv4Addr,
    namespace: OwnedFd,
    requests: mpsc::Sender<Request>,
    relays: Vec<JoinHandle<()>>,
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        for relay in &self.relays {
            relay.abort();
        }
    }
}

impl PodNetwork {
    /// A new namespace with its loopback interface up and an IP of [`POD_RANGE`] that no other
    /// Pod on this machine holds for any of `ports` (each bound on the machine at once); the
    /// Pod's `ports` are relayed from the machine into the namespace, and the API server's
    /// `api_port` on 127.0.0.1 from the namespace to the machine.
    pub async fn create(ports: &[u16], api_port: u16) -> Result<Self, LocalError> {
        let (requests, receive) = mpsc::channel::<Request>();
        let (namespace_sender, namespace_receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("pod-network".into())
            .spawn(move || namespace_thread(&namespace_sender, &receive))
            .map_err(io("starting a Pod network thread"))?;
        let namespace = namespace_receiver
            .recv()
            .map_err(|_| LocalError::NotReady("the Pod network thread ended".into()))?
            .map_err(io("making a network namespace (unshare CLONE_NEWNET, needs root)"))?;
        let mut network = Self { ip: Ipv4Addr::UNSPECIFIED, namespace, requests, relays: Vec::new() };
        let (ip, listeners) = bind_free_ip(ports).await?;
        network.ip = ip;
        network.run_in_namespace(&["ip", "link", "set", "lo", "up"])?;
        network.run_in_namespace(&["ip", "address", "add", &format!("{ip}/32"), "dev", "lo"])?;
        for (listener, port) in listeners.into_iter().zip(ports) {
            let inside = SocketAddr::V4(SocketAddrV4::new(ip, *port));
            let requests = network.requests.clone();
            network.relays.push(tokio::spawn(relay(listener, move || connect_inside(requests.clone(), inside))));
        }
        let api = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, api_port));
        let inside_api = network.listen_inside(api)?;
        network.relays.push(tokio::spawn(relay(inside_api, move || async move { TcpStream::connect(api).await })));
        Ok(network)
    }

    /// Makes `command` (before it starts) enter this namespace.
    pub fn enter(&self, command: &mut tokio::process::Command) {
        let fd = self.namespace.as_raw_fd();
        // SAFETY: setns(2) on a namespace file this process holds open, between fork and exec;
        // it touches no memory of the parent.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            });
        }
    }

    fn run_in_namespace(&self, argv: &[&str]) -> Result<(), LocalError> {
        let fd = self.namespace.as_raw_fd();
        let mut command = std::process::Command::new(argv[0]);
        command.args(&argv[1..]);
        // SAFETY: as in `enter`.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
            });
        }
        let output = command.output().map_err(io(format!("running {}", argv.join(" "))))?;
        if !output.status.success() {
            return Err(LocalError::Command {
                what: format!("{} in a Pod's network namespace", argv.join(" ")),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    fn listen_inside(&self, address: SocketAddr) -> Result<TcpListener, LocalError> {
        let (reply, answer) = mpsc::channel();
        let what = format!("listening on {address} in a Pod's network namespace");
        self.requests
            .send(Request::Listen(address, reply))
            .map_err(|_| LocalError::NotReady("the Pod network thread ended".into()))?;
        let listener = answer
            .recv()
            .map_err(|_| LocalError::NotReady("the Pod network thread ended".into()))?
            .map_err(io(what.clone()))?;
        listener.set_nonblocking(true).map_err(io(what.clone()))?;
        TcpListener::from_std(listener).map_err(io(what))
    }
}

/// The namespace's thread: moves itself into a new network namespace, sends its handle, then
/// makes the sockets asked for until the [`PodNetwork`] is dropped.
fn namespace_thread(namespace: &mpsc::Sender<std::io::Result<OwnedFd>>, requests: &mpsc::Receiver<Request>) {
    // SAFETY: unshare(2) moves this thread alone into a new network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let _ = namespace.send(Err(std::io::Error::last_os_error()));
        return;
    }
    let opened = std::fs::File::open("/proc/thread-self/ns/net").map(OwnedFd::from);
    if namespace.send(opened).is_err() {
        return;
    }
    while let Ok(request) = requests.recv() {
        match request {
            Request::Listen(address, reply) => {
                let _ = reply.send(std::net::TcpListener::bind(address));
            }
            Request::Connect(address, reply) => {
                let _ = reply.send(std::net::TcpStream::connect(address));
            }
        }
    }
}

/// A connection to `address` inside the namespace (made by its thread; a local connect answers
/// at once).
async fn connect_inside(requests: mpsc::Sender<Request>, address: SocketAddr) -> std::io::Result<TcpStream> {
    let (reply, answer) = mpsc::channel();
    let gone = || std::io::Error::other("the Pod network thread ended");
    requests.send(Request::Connect(address, reply)).map_err(|_| gone())?;
    let stream = tokio::task::spawn_blocking(move || answer.recv().map_err(|_| gone()))
        .await
        .map_err(std::io::Error::other)???;
    stream.set_nonblocking(true)?;
    TcpStream::from_std(stream)
}

/// Binds every one of `ports` on one IP of [`POD_RANGE`] on the machine, trying other IPs
/// while one of them is taken (by a Pod of another test process).
async fn bind_free_ip(ports: &[u16]) -> Result<(Ipv4Addr, Vec<TcpListener>), LocalError> {
    let mut last = None;
    for _ in 0..64 {
        let ip = random_pod_ip()?;
        let mut listeners = Vec::new();
        for port in ports {
            match TcpListener::bind((ip, *port)).await {
                Ok(listener) => listeners.push(listener),
                Err(error) => {
                    last = Some(error);
                    break;
                }
            }
        }
        if listeners.len() == ports.len() {
            return Ok((ip, listeners));
        }
    }
    let source = last.unwrap_or_else(|| std::io::Error::other("no free Pod IP"));
    Err(LocalError::Io { what: format!("binding a Pod IP of {POD_RANGE}"), source })
}

/// An address of 198.18.1.1 to 198.18.254.254, from the kernel's random generator.
fn random_pod_ip() -> Result<Ipv4Addr, LocalError> {
    let mut bytes = [0u8; 2];
    let mut random = std::fs::File::open("/dev/urandom").map_err(io("opening /dev/urandom"))?;
    std::io::Read::read_exact(&mut random, &mut bytes).map_err(io("reading /dev/urandom"))?;
    Ok(Ipv4Addr::new(198, 18, 1 + bytes[0] % 254, 1 + bytes[1] % 254))
}

/// Accepts connections on `listener` and joins each to one `connect` makes, both ways, until
/// either side closes (the other then closes too).
async fn relay<F, Fut>(listener: TcpListener, connect: F)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::io::Result<TcpStream>> + Send,
{
    let connect = std::sync::Arc::new(connect);
    while let Ok((mut incoming, _)) = listener.accept().await {
        let connect = connect.clone();
        tokio::spawn(async move {
            let Ok(mut outgoing) = connect().await else { return };
            let _ = tokio::io::copy_bidirectional(&mut incoming, &mut outgoing).await;
        });
    }
}
