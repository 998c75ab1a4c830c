//! A local anvil node for tests: spawned on an ephemeral port, killed on drop, plus deploy and
//! transaction helpers and the dstack test contracts of `fixtures/contracts`.
//!
//! anvil comes from npm (`@foundry-rs/anvil-linux-amd64`, pinned in package.json): run `npm ci`
//! at the repository root. Tests fail (never skip) when it is missing.
#![allow(dead_code)] // each test crate uses a different part

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol;
use alloy::sol_types::{SolCall, SolConstructor};

/// The anvil binary installed by `npm ci`.
pub(crate) fn anvil_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(
        path.is_file(),
        "anvil not found at {}: run `npm ci` at the repository root",
        path.display()
    );
    path
}

/// A running anvil node; killed when dropped.
pub(crate) struct Anvil {
    child: Option<Child>,
    port: u16,
}

impl Anvil {
    /// Starts anvil on an ephemeral port (automining, chain id 31337, the default accounts).
    pub(crate) fn spawn() -> Anvil {
        Anvil::spawn_on(0, &[])
    }

    /// Starts anvil on `port` (0: ephemeral) with extra arguments.
    pub(crate) fn spawn_on(port: u16, extra_args: &[&str]) -> Anvil {
        let mut child = Command::new(anvil_binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn anvil");
        let stdout = child.stdout.take().expect("anvil stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Drain stdout for the node's lifetime so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("Listening on 127.0.0.1:") {
                    if let (Some(tx), Ok(port)) = (tx.take(), port.trim().parse::<u16>()) {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("anvil did not start listening within 20 s");
            }
        };
        Anvil {
            child: Some(child),
            port,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn provider(&self) -> RootProvider {
        RootProvider::new_http(self.url().parse().expect("anvil url"))
    }

    /// Kills the node now (a crash, not a shutdown).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
    }
}

/// anvil's first default account (unlocked, funded): the owner of everything deployed here.
pub(crate) fn deployer() -> Address {
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        .parse()
        .expect("address")
}

/// A second unlocked account.
pub(crate) fn other_account() -> Address {
    "0x70997970C51812dc3A010C7d01b50e0d4E79C8C8"
        .parse()
        .expect("address")
}

/// Sends a transaction from `from` (anvil signs for its unlocked accounts) and waits for its
/// receipt; panics if it reverted.
pub(crate) async fn send(
    provider: &RootProvider,
    from: Address,
    to: Option<Address>,
    input: Vec<u8>,
) -> TransactionReceipt {
    let mut request = TransactionRequest::default()
        .from(from)
        .input(Bytes::from(input).into());
    request = match to {
        Some(to) => request.to(to),
        None => request.create(),
    };
    let hash: B256 = provider
        .client()
        .request("eth_sendTransaction", (request,))
        .await
        .expect("eth_sendTransaction");
    let start = Instant::now();
    loop {
        if let Some(receipt) = provider
            .get_transaction_receipt(hash)
            .await
            .expect("receipt")
        {
            assert!(receipt.status(), "transaction {hash} reverted");
            return receipt;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no receipt for {hash}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls `call` on `to` from the deployer.
pub(crate) async fn transact<C: SolCall>(
    provider: &RootProvider,
    to: Address,
    call: C,
) -> TransactionReceipt {
    send(provider, deployer(), Some(to), call.abi_encode()).await
}

/// Deploys `creation_code ++ constructor_args`; returns the new contract's address.
pub(crate) async fn deploy(
    provider: &RootProvider,
    creation_code: &[u8],
    constructor_args: &[u8],
) -> Address {
    let mut input = creation_code.to_vec();
    input.extend_from_slice(constructor_args);
    let receipt = send(provider, deployer(), None, input).await;
    receipt.contract_address.expect("contract address")
}

/// The creation bytecode of a compiled fixture contract.
pub(crate) fn artifact_bytecode(contract: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/contracts/artifacts")
        .join(format!("{contract}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("artifact json");
    let hex = json["bytecode"].as_str().expect("bytecode field");
    alloy::hex::decode(hex).expect("bytecode hex")
}

/// Mines `count` empty blocks.
pub(crate) async fn mine(provider: &RootProvider, count: u64) {
    let _: serde_json::Value = provider
        .client()
        .request("anvil_mine", (U256::from(count),))
        .await
        .expect("anvil_mine");
}

/// `evm_snapshot`; returns the id.
pub(crate) async fn snapshot(provider: &RootProvider) -> U256 {
    provider
        .client()
        .request("evm_snapshot", ())
        .await
        .expect("evm_snapshot")
}

/// `evm_revert` to a snapshot id.
pub(crate) async fn revert(provider: &RootProvider, id: U256) {
    let reverted: bool = provider
        .client()
        .request("evm_revert", (id,))
        .await
        .expect("evm_revert");
    assert!(reverted, "evm_revert failed");
}

/// `anvil_dumpState` (hex of the whole chain state).
pub(crate) async fn dump_state(provider: &RootProvider) -> Bytes {
    provider
        .client()
        .request("anvil_dumpState", ())
        .await
        .expect("anvil_dumpState")
}

/// `anvil_loadState`.
pub(crate) async fn load_state(provider: &RootProvider, state: Bytes) {
    let loaded: bool = provider
        .client()
        .request("anvil_loadState", (state,))
        .await
        .expect("anvil_loadState");
    assert!(loaded, "anvil_loadState failed");
}

sol! {
    /// The test contracts' ABI (fixtures/contracts/src), as far as tests drive them.
    struct KmsInfo { bytes k256Pubkey; bytes caPubkey; bytes quote; bytes eventlog; }

    interface DstackKms {
        function initialize(address initialOwner, address _appImplementation) external;
        function setGatewayAppId(string appId) external;
        function setAppImplementation(address _appImplementation) external;
        function registerApp(address appId) external;
        function deployAndRegisterApp(address initialOwner, bool disableUpgrades, bool requireTcbUpToDate, bool allowAnyDevice, bytes32 initialDeviceId, bytes32 initialComposeHash) external returns (address appId);
        function deployAndRegisterApp(address initialOwner, bool disableUpgrades, bool allowAnyDevice, bytes32 initialDeviceId, bytes32 initialComposeHash) external returns (address appId);
        function addKmsAggregatedMr(bytes32 mrAggregated) external;
        function removeKmsAggregatedMr(bytes32 mrAggregated) external;
        function addKmsDevice(bytes32 deviceId) external;
        function removeKmsDevice(bytes32 deviceId) external;
        function addOsImageHash(bytes32 osImageHash) external;
        function removeOsImageHash(bytes32 osImageHash) external;
        function appImplementation() external view returns (address);
        event AppDeployedViaFactory(address indexed appId, address indexed deployer);
    }

    interface DstackApp {
        function initialize(address initialOwner, bool _disableUpgrades, bool _requireTcbUpToDate, bool _allowAnyDevice, bytes32 initialDeviceId, bytes32 initialComposeHash) external;
        function initialize(address initialOwner, bool _disableUpgrades, bool _allowAnyDevice, bytes32 initialDeviceId, bytes32 initialComposeHash) external;
        function addComposeHash(bytes32 composeHash) external;
        function removeComposeHash(bytes32 composeHash) external;
        function addDevice(bytes32 deviceId) external;
        function removeDevice(bytes32 deviceId) external;
        function setAllowAnyDevice(bool allowAny) external;
        function setRequireTcbUpToDate(bool requireUpToDate) external;
        function disableUpgrades() external;
        function upgradeToAndCall(address newImplementation, bytes data) external payable;
        function sneakyAddComposeHash(bytes32 composeHash) external;
    }

    contract ERC1967Proxy {
        constructor(address implementation, bytes data);
    }
}

/// The dstack test contracts deployed on one node: the KMS behind a proxy, and the app
/// implementations (DstackApp is the KMS's `appImplementation`).
pub(crate) struct Dstack {
    pub kms: Address,
    pub app_implementation: Address,
    pub legacy_implementation: Address,
    pub custom_implementation: Address,
}

impl Dstack {
    pub(crate) async fn deploy(provider: &RootProvider) -> Dstack {
        let app_implementation = deploy(provider, &artifact_bytecode("DstackApp"), &[]).await;
        let legacy_implementation =
            deploy(provider, &artifact_bytecode("LegacyDstackApp"), &[]).await;
        let custom_implementation =
            deploy(provider, &artifact_bytecode("CustomAuthApp"), &[]).await;
        let kms_implementation = deploy(provider, &artifact_bytecode("DstackKms"), &[]).await;
        let init = DstackKms::initializeCall {
            initialOwner: deployer(),
            _appImplementation: app_implementation,
        };
        let kms = deploy_proxy(provider, kms_implementation, init.abi_encode()).await;
        Dstack {
            kms,
            app_implementation,
            legacy_implementation,
            custom_implementation,
        }
    }

    /// `deployAndRegisterApp` (6-argument form); returns the new app's address.
    pub(crate) async fn deploy_app(
        &self,
        provider: &RootProvider,
        require_tcb_up_to_date: bool,
        allow_any_device: bool,
        initial_device: B256,
        initial_compose_hash: B256,
    ) -> Address {
        let call = DstackKms::deployAndRegisterApp_0Call {
            initialOwner: deployer(),
            disableUpgrades: false,
            requireTcbUpToDate: require_tcb_up_to_date,
            allowAnyDevice: allow_any_device,
            initialDeviceId: initial_device,
            initialComposeHash: initial_compose_hash,
        };
        let receipt = transact(provider, self.kms, call).await;
        factory_app(&receipt)
    }

    /// `deployAndRegisterApp` (5-argument form).
    pub(crate) async fn deploy_app_v1(
        &self,
        provider: &RootProvider,
        allow_any_device: bool,
        initial_device: B256,
        initial_compose_hash: B256,
    ) -> Address {
        let call = DstackKms::deployAndRegisterApp_1Call {
            initialOwner: deployer(),
            disableUpgrades: false,
            allowAnyDevice: allow_any_device,
            initialDeviceId: initial_device,
            initialComposeHash: initial_compose_hash,
        };
        factory_app(&transact(provider, self.kms, call).await)
    }

    /// A proxy deployed by hand to `implementation` (initialized with the 5-argument form) and
    /// registered with `registerApp`.
    pub(crate) async fn deploy_manual_app(
        &self,
        provider: &RootProvider,
        implementation: Address,
        compose_hash: B256,
    ) -> Address {
        let init = DstackApp::initialize_1Call {
            initialOwner: deployer(),
            _disableUpgrades: false,
            _allowAnyDevice: true,
            initialDeviceId: B256::ZERO,
            initialComposeHash: compose_hash,
        };
        let app = deploy_proxy(provider, implementation, init.abi_encode()).await;
        transact(
            provider,
            self.kms,
            DstackKms::registerAppCall { appId: app },
        )
        .await;
        app
    }
}

/// Deploys the fixture ERC1967Proxy to `implementation`, calling `init`.
pub(crate) async fn deploy_proxy(
    provider: &RootProvider,
    implementation: Address,
    init: Vec<u8>,
) -> Address {
    let args = ERC1967Proxy::constructorCall {
        implementation,
        data: init.into(),
    }
    .abi_encode();
    deploy(provider, &artifact_bytecode("ERC1967Proxy"), &args).await
}

fn factory_app(receipt: &TransactionReceipt) -> Address {
    receipt
        .inner
        .logs()
        .iter()
        .find_map(|log| log.log_decode::<DstackKms::AppDeployedViaFactory>().ok())
        .map(|event| event.inner.data.appId)
        .expect("AppDeployedViaFactory in receipt")
}
