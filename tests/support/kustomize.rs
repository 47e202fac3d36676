//! Renders `manifests/` with kustomize, as a user installs it.

use std::path::Path;
use std::process::Command;

/// `kubectl kustomize` of `manifests/` plus the optional components `components`, rendered from a
/// kustomization in a scratch folder (kustomize refuses an overlay inside its base's folder).
pub fn render_with_components(name: &str, components: &[&str]) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kustomize-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let dir = dir.canonicalize().expect("scratch dir path");
    let manifests = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests").canonicalize().expect("manifests path");
    let common = dir.components().zip(manifests.components()).take_while(|(a, b)| a == b).count();
    let up = "../".repeat(dir.components().count() - common);
    let down: std::path::PathBuf = manifests.components().skip(common).collect();
    let base = format!("{up}{}", down.display());
    let mut kustomization = format!("resources:\n  - {base}\ncomponents:\n");
    for component in components {
        kustomization.push_str(&format!("  - {base}/components/{component}\n"));
    }
    std::fs::write(dir.join("kustomization.yaml"), kustomization).expect("kustomization");
    let output = Command::new("kubectl").arg("kustomize").arg(&dir).output().expect("kubectl runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(output.status.success(), "kubectl kustomize: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}
