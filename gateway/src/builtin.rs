//! The first-party plugins shipped inside the binary: the components of `plugins/`, built by
//! `build.rs` and embedded. A route's filter may name one without a `plugins:` entry; a `plugins:`
//! entry of the same name overrides it (a path or URL of the user's choosing). `gateway plugins`
//! lists them.

/// One embedded plugin.
pub struct Builtin {
    /// The name routes use (the crate's name in `plugins/`).
    pub name: &'static str,
    /// Its crate version.
    pub version: &'static str,
    /// It runs on warm instances reused by one request after another unless its `plugins:` entry
    /// says otherwise (`[package.metadata.gateway] instance_mode = "reuse"` in its Cargo.toml: every
    /// first-party plugin, for their caches and because a fresh instance per request costs about as
    /// much CPU as the rest of the request).
    pub reuse: bool,
    /// The key-value namespace it is granted when its `plugins:` entry grants none
    /// (`[package.metadata.gateway] kv_namespace = "..."` in its Cargo.toml): local unless the
    /// config's `kv_namespaces:` says otherwise.
    pub kv_namespace: Option<&'static str>,
    /// The component.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// The embedded plugin `name`, if there is one.
pub fn get(name: &str) -> Option<&'static Builtin> {
    BUILTIN.iter().find(|b| b.name == name)
}

/// Every embedded plugin, by name.
pub fn all() -> &'static [Builtin] {
    BUILTIN
}

impl Builtin {
    /// The plugin's entry as if it were written under `plugins:` with no settings but its name (a
    /// component: no upstreams, its own key-value namespace if it has one, consumers granted, default limits; the plugin's
    /// own instance mode).
    pub fn config(&self) -> crate::config::Plugin {
        crate::config::Plugin {
            name: self.name.to_string(),
            path: None,
            url: None,
            sha256: None,
            ca: None,
            abi: None,
            limits: Default::default(),
            vm_config: None,
            capabilities: self
                .kv_namespace
                .map(|ns| crate::config::PluginCapabilities {
                    kv_namespace: Some(ns.to_owned()),
                    ..Default::default()
                }),
            instance_mode: self.reuse.then_some(crate::config::InstanceMode::Reuse),
            service: None,
            skip: Vec::new(),
            vms: None,
        }
    }
}
