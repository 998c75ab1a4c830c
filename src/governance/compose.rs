//! What an app-compose.json says about its measurement: the compose hash (sha256 of the exact
//! bytes; never of a re-serialized copy) and the images it pulls by tag rather than by digest,
//! which is why a compose hash can stay the same while the code it runs changes, and why users
//! re-register after every deploy when they rewrite the tag into the file.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::GovernanceError;
use crate::registry::view::Bytes32;

/// sha256 of the app-compose.json bytes, as dstack measures it.
pub fn compose_hash(app_compose: &[u8]) -> Bytes32 {
    Sha256::digest(app_compose).into()
}

/// An image referenced without an `@sha256:` digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnpinnedImage {
    /// The compose service, when the file names it.
    pub service: Option<String>,
    /// The image reference as written (`nginx:latest`).
    pub image: String,
}

/// The images of the app's docker-compose file that are not pinned to a digest. The compose
/// file is YAML inside the JSON's `docker_compose_file` string; `image:` keys are read line by
/// line (block style, the form dstack's tooling writes). Other runners have no images.
pub fn unpinned_images(app_compose: &[u8]) -> Result<Vec<UnpinnedImage>, GovernanceError> {
    let bad = |what: String| GovernanceError::InvalidAppCompose(what);
    let json: serde_json::Value =
        serde_json::from_slice(app_compose).map_err(|e| bad(e.to_string()))?;
    let object = json
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let compose = match object.get("docker_compose_file") {
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(serde_json::Value::String(text)) => text,
        Some(_) => return Err(bad("docker_compose_file is not a string".into())),
    };
    Ok(images(compose)
        .into_iter()
        .filter(|image| !is_pinned(&image.image))
        .collect())
}

/// `name@sha256:<64 hex>` (a tag before the digest is allowed and ignored by the engine).
fn is_pinned(image: &str) -> bool {
    image.rsplit_once("@sha256:").is_some_and(|(_, digest)| {
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Every `image:` value, with the service it is under (the keys one level inside `services:`).
fn images(compose: &str) -> Vec<UnpinnedImage> {
    let mut found = Vec::new();
    let mut in_services = false;
    let mut service_indent: Option<usize> = None;
    let mut service: Option<String> = None;
    for line in compose.lines() {
        let content = strip_comment(line);
        let trimmed = content.trim_start();
        if trimmed.is_empty() {
            continue;
        }
        let indent = content.len() - trimmed.len();
        if indent == 0 {
            in_services = trimmed.trim_end() == "services:";
            service_indent = None;
            service = None;
            continue;
        }
        if in_services && service_indent.is_none_or(|level| indent <= level) {
            if let Some(name) = trimmed.trim_end().strip_suffix(':') {
                service_indent = Some(indent);
                service = Some(unquote(name).to_owned());
                continue;
            }
        }
        let key_value = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        if let Some(value) = key_value.strip_prefix("image:") {
            let image = unquote(value.trim());
            if !image.is_empty() {
                found.push(UnpinnedImage {
                    service: service.clone(),
                    image: image.to_owned(),
                });
            }
        }
    }
    found
}

/// The line up to a `#` comment (one preceded by whitespace, as YAML requires).
fn strip_comment(line: &str) -> &str {
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        if c == '#' && previous.is_whitespace() {
            return &line[..i];
        }
        previous = c;
    }
    line
}

fn unquote(value: &str) -> &str {
    let value = value.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_compose(compose: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "manifest_version": 2, "name": "app", "runner": "docker-compose",
            "docker_compose_file": compose,
        }))
        .unwrap()
    }

    #[test]
    fn images_by_tag_are_unpinned_digests_are_not() {
        let digest = "a".repeat(64);
        let compose = format!(
            "services:\n  web:\n    image: nginx:latest # moves\n    ports:\n      - \"80:80\"\n  \
             db:\n    image: \"postgres@sha256:{digest}\"\n  worker:\n    image: 'ghcr.io/acme/worker:1.2@sha256:{digest}'\n  \
             cache:\n    image: redis\nvolumes:\n  data:\n"
        );
        let unpinned = unpinned_images(&app_compose(&compose)).unwrap();
        assert_eq!(
            unpinned,
            vec![
                UnpinnedImage {
                    service: Some("web".into()),
                    image: "nginx:latest".into()
                },
                UnpinnedImage {
                    service: Some("cache".into()),
                    image: "redis".into()
                },
            ]
        );
        // A short or malformed digest pins nothing.
        let compose = "services:\n  web:\n    image: nginx@sha256:abcd\n";
        assert_eq!(unpinned_images(&app_compose(compose)).unwrap().len(), 1);
    }

    #[test]
    fn the_dstack_example_pulls_by_tag() {
        let compose =
            "services:\n  jupyter:\n    image: quay.io/jupyter/base-notebook\n    user: root\n";
        let unpinned = unpinned_images(&app_compose(compose)).unwrap();
        assert_eq!(unpinned[0].image, "quay.io/jupyter/base-notebook");
        assert_eq!(unpinned[0].service.as_deref(), Some("jupyter"));
    }

    #[test]
    fn hash_is_of_the_exact_bytes_and_other_runners_have_no_images() {
        let bytes = app_compose("services: {}\n");
        assert_eq!(
            compose_hash(&bytes),
            <[u8; 32]>::from(Sha256::digest(&bytes))
        );
        let mut spaced = bytes.clone();
        spaced.push(b'\n');
        assert_ne!(compose_hash(&spaced), compose_hash(&bytes));
        let bash = br#"{"runner":"bash","docker_compose_file":null}"#;
        assert!(unpinned_images(bash).unwrap().is_empty());
        assert_eq!(
            unpinned_images(b"[1]").unwrap_err().kind().as_str(),
            "invalid_app_compose"
        );
        assert_eq!(
            unpinned_images(br#"{"docker_compose_file":1}"#)
                .unwrap_err()
                .kind()
                .as_str(),
            "invalid_app_compose"
        );
    }
}
