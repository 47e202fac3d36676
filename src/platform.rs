//! Which kind of cluster the step Pods run on, the one home of that setting: OpenShift, where the
//! platform picks the user, group and `fsGroup` of every Pod from its namespace's ranges
//! (SecurityContextConstraints), or any other Kubernetes, where the Pod names them itself. Told
//! apart by the API's discovery: only OpenShift serves the group [`OPENSHIFT_SECURITY_GROUP`].

/// The API group of OpenShift's SecurityContextConstraints.
pub const OPENSHIFT_SECURITY_GROUP: &str = "security.openshift.io";

/// The cluster's platform, as far as step Pods are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// Kubernetes without SecurityContextConstraints: Pods name their user, group and `fsGroup`.
    Kubernetes,
    /// OpenShift: SecurityContextConstraints assign the user and `fsGroup` from the namespace's
    /// ranges and refuse others; the container's primary group is 0.
    OpenShift,
}

impl Platform {
    /// The platform a list of served API groups shows.
    pub fn from_groups<'a>(mut groups: impl Iterator<Item = &'a str>) -> Self {
        if groups.any(|group| group == OPENSHIFT_SECURITY_GROUP) { Self::OpenShift } else { Self::Kubernetes }
    }

    /// Asks the API server's discovery (`GET /apis`) which platform it is.
    pub async fn discover(client: &kube::Client) -> Result<Self, kube::Error> {
        let groups = client.list_api_groups().await?;
        Ok(Self::from_groups(groups.groups.iter().map(|group| group.name.as_str())))
    }

    /// The name users write (`kubernetes`, `openshift`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Kubernetes => "kubernetes",
            Self::OpenShift => "openshift",
        }
    }
}

/// What the operator is told about its platform (`--platform`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PlatformChoice {
    /// Found from the API's discovery at start.
    #[default]
    Auto,
    /// OpenShift, whatever discovery shows.
    Openshift,
    /// Kubernetes, whatever discovery shows.
    Kubernetes,
}

impl PlatformChoice {
    /// The platform chosen, asking the API's discovery only for [`PlatformChoice::Auto`]; logs
    /// which and how.
    pub async fn resolve(self, client: &kube::Client) -> Result<Platform, kube::Error> {
        let platform = match self {
            Self::Auto => Platform::discover(client).await?,
            Self::Openshift => Platform::OpenShift,
            Self::Kubernetes => Platform::Kubernetes,
        };
        match self {
            Self::Auto => tracing::info!(platform = platform.name(), "platform found from the API's discovery"),
            _ => tracing::info!(platform = platform.name(), "platform set by --platform"),
        }
        Ok(platform)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openshift_is_the_cluster_serving_security_openshift_io() {
        let kubernetes = ["apps", "batch", "apps.3scale.net", "security.openshift.io.example.com"];
        assert_eq!(Platform::from_groups(kubernetes.into_iter()), Platform::Kubernetes);
        let openshift = ["apps", "route.openshift.io", "security.openshift.io"];
        assert_eq!(Platform::from_groups(openshift.into_iter()), Platform::OpenShift);
    }
}
