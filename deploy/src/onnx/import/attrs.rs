//! A node's attributes, each read at most once: any attribute left unread after an op's
//! lowering is an unsupported attribute, so a semantic the importer ignores is an error,
//! never a silently different model.

use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use onnx_protobuf::{AttributeProto, NodeProto};

use super::importer::unsupported;
use crate::onnx::error::OnnxError;

/// Attributes of one node, each read at most once; any left unread is an unsupported
/// attribute.
pub(super) struct Attrs<'n> {
    attrs: &'n [AttributeProto],
    used: Vec<bool>,
}

impl<'n> Attrs<'n> {
    pub(super) fn new(n: &'n NodeProto) -> Self {
        Self {
            attrs: &n.attribute,
            used: vec![false; n.attribute.len()],
        }
    }

    pub(super) fn get(&mut self, name: &str) -> Option<&'n AttributeProto> {
        let i = self.attrs.iter().position(|a| a.name == name)?;
        self.used[i] = true;
        Some(&self.attrs[i])
    }

    pub(super) fn int(&mut self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }

    pub(super) fn float(&mut self, name: &str, default: f32) -> f32 {
        self.get(name).map_or(default, |a| a.f)
    }

    pub(super) fn ints(&mut self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }

    pub(super) fn string(&mut self, name: &str) -> Option<String> {
        self.get(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// Errors on the first attribute nobody read.
    pub(super) fn done(&self) -> Result<(), OnnxError> {
        match self.used.iter().position(|&u| !u) {
            Some(i) => unsupported(format!("attribute {:?}", self.attrs[i].name)),
            None => Ok(()),
        }
    }
}
