//! A local cluster for installing the operator the way users do (`kubectl apply -k manifests/`,
//! Helm): the control plane, the development APIManager CRD, a Node running the operator's own
//! Pods from the binary standing for its image ([`serving_pods`](super::serving_pods)), the node
//! stand-in for step Pods, the 3scale-operator stand-in and, when asked, real cert-manager and
//! OpenShift's discovery and `restricted-v2` admission ([`openshift`](super::openshift), for every
//! Pod: the operator's own too). No operator runs until an install creates its Deployment.

use super::cert_manager::CertManager;
use super::control_plane::{self, ControlPlane};
use super::install::{self, OPERATOR_NAMESPACE};
use super::node::{NodeSettings, NodeStandIn};
use super::openshift::OpenShiftStandIn;
use super::serving_pods::{ServingNode, ServingSettings};
use super::threescale_operator::ThreescaleOperatorStandIn;
use super::{LocalError, repo_dir, start_control_plane};
use crate::platform::Platform;
use std::path::{Path, PathBuf};

/// What runs the operator's image.
#[derive(Clone, Debug)]
pub struct Image {
    /// The image name the manifests deploy (`name:tag`).
    pub name: String,
    /// The binary that image runs (its entrypoint).
    pub binary: PathBuf,
}

/// The running cluster; dropping it stops cert-manager, the stand-ins (and the Pods they run),
/// then the control plane.
pub struct DeployedCluster {
    /// OpenShift's admission of Pods, on [`Platform::OpenShift`].
    pub openshift: Option<OpenShiftStandIn>,
    /// Real cert-manager, when asked for.
    pub cert_manager: Option<CertManager>,
    /// Runs the operator's Pods.
    pub serving: ServingNode,
    /// Runs step Pods.
    pub node: NodeStandIn,
    /// Marks APIManagers available, as 3scale-operator would.
    pub threescale_operator: ThreescaleOperatorStandIn,
    /// The control plane.
    pub plane: ControlPlane,
}

impl DeployedCluster {
    /// Builds what is missing and starts everything under `dir`, the operator's Pods (in its
    /// namespace) and step Pods running `image`, cert-manager with `with_cert_manager`, as
    /// `platform` is.
    pub async fn start(
        dir: &Path,
        image: &Image,
        with_cert_manager: bool,
        platform: Platform,
    ) -> Result<Self, LocalError> {
        let repo = repo_dir();
        let bin = control_plane::build_binaries(&repo)?;
        let plane = start_control_plane(&repo, &bin, dir).await?;
        let admin = plane.admin_client().await?;
        install::apply_yaml(&admin, install::APIMANAGER_CRD, "default").await?;
        install::wait_established(&admin, "apimanagers.apps.3scale.net").await?;
        let cert_manager = if with_cert_manager {
            Some(CertManager::start(&repo, &admin, &plane.admin_kubeconfig, &plane.dir.join("logs")).await?)
        } else {
            None
        };
        let openshift = match platform {
            Platform::OpenShift => Some(OpenShiftStandIn::start(&admin, &plane.admin_kubeconfig, &plane.certs).await?),
            Platform::Kubernetes => None,
        };
        let ca = plane.certs.join("ca.crt");
        let serving = ServingNode::start(
            &admin,
            plane.admin_kubeconfig.clone(),
            ServingSettings {
                image: image.name.clone(),
                binary: image.binary.clone(),
                namespace: OPERATOR_NAMESPACE.to_owned(),
                pods: dir.join("pods"),
                server: plane.server.clone(),
                ca: ca.clone(),
            },
        )
        .await?;
        let node = NodeStandIn::start(
            plane.admin_kubeconfig.clone(),
            NodeSettings {
                operator_binary: image.binary.clone(),
                volumes: dir.join("volumes"),
                pods: dir.join("pods"),
                server: plane.server.clone(),
                ca,
            },
        );
        let threescale_operator = ThreescaleOperatorStandIn::start(plane.admin_kubeconfig.clone());
        Ok(Self { openshift, cert_manager, serving, node, threescale_operator, plane })
    }

    /// The folder standing in for claim `claim` of `namespace`.
    pub fn volume(&self, namespace: &str, claim: &str) -> PathBuf {
        self.plane.dir.join("volumes").join(namespace).join(claim)
    }
}
