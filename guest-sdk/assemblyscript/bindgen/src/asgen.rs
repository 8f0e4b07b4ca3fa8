//! The AssemblyScript generator: WIT types to AssemblyScript classes, and the canonical ABI
//! (flattening, memory layouts, string encoding UTF-16) as straight-line AssemblyScript.
//!
//! Type mapping:
//!
//! | WIT | AssemblyScript |
//! |---|---|
//! | `bool`, `u8`..`u64`, `s8`..`s64`, `f32`, `f64`, `char` | `bool`, `u8`..`u64`, `i8`..`i64`, `f32`, `f64`, `u32` |
//! | `string` | `string` (lowered and lifted without a copy) |
//! | `list<T>` | `Array<T>` |
//! | `option<T>` | `T \| null` for a non-nullable reference `T`, else `Box<T> \| null` |
//! | `result<T, E>` | `Result<T, E>` (`Unit` for a missing side) |
//! | `tuple<A, B, ..>` | `Tuple2<A, B>` .. `Tuple4<..>` (fields `f0`, `f1`, ..) |
//! | `record` | a class with one public field per WIT field, and a constructor taking them in order |
//! | `variant` | a class with a `tag` (an enum `<Name>Tag`), one static factory and one getter per case |
//! | `enum` | an AssemblyScript `enum` |
//! | `resource` | a class holding the `handle`, with the resource's methods and a `drop()` |
//!
//! `Box`, `Result`, `Unit`, the tuples and the string and allocation helpers live in the SDK's
//! hand-written `assembly/cabi.ts`; the typed implementations of the world's exports live in
//! `assembly/rule.ts`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use anyhow::{Result, bail};
use wit_parser::abi::{AbiVariant, WasmType};
use wit_parser::{
    Docs, Function, FunctionKind, Handle, Int, InterfaceId, Resolve, SizeAlign, Type, TypeDefKind, TypeId, WorldId,
    WorldItem, WorldKey,
};

/// The canonical ABI's limits on flattened parameters and results.
const MAX_FLAT_PARAMS: usize = 16;
const MAX_FLAT_RESULTS: usize = 1;
/// The module that implements the world's exports, relative to the generated file.
const EXPORTS_IMPL_MODULE: &str = "../rule";
/// The module with the generic support code, relative to the generated file.
const CABI_MODULE: &str = "../cabi";
/// The largest tuple `cabi.ts` has a class for.
const MAX_TUPLE: usize = 4;

/// One core import of the generated glue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreImport {
    /// The import module (`wasmtx:rule/models@0.1.0`).
    pub module: String,
    /// The import name (`[method]model.get-scalar`).
    pub name: String,
    /// The core signature, `(i32, i64) -> ()`.
    pub signature: String,
}

/// One core export of the generated glue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreExport {
    /// The export name (`run`).
    pub name: String,
    /// The core signature.
    pub signature: String,
}

/// The generator's output.
#[derive(Debug)]
pub struct Generated {
    /// The AssemblyScript glue.
    pub bindings: String,
    /// Its core imports.
    pub imports: Vec<CoreImport>,
    /// Its core exports.
    pub exports: Vec<CoreExport>,
}

/// A core WebAssembly value type, as the canonical ABI flattens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Core {
    I32,
    I64,
    F32,
    F64,
}

impl Core {
    fn name(self) -> &'static str {
        match self {
            Self::I32 => "i32",
            Self::I64 => "i64",
            Self::F32 => "f32",
            Self::F64 => "f64",
        }
    }

    /// The canonical ABI's `join` of two flattened variant payload types.
    fn join(self, other: Self) -> Self {
        match (self, other) {
            (a, b) if a == b => a,
            (Self::I32, Self::F32) | (Self::F32, Self::I32) => Self::I32,
            _ => Self::I64,
        }
    }

    fn from_wasm(ty: WasmType) -> Self {
        match ty {
            WasmType::I32 | WasmType::Pointer | WasmType::Length => Self::I32,
            WasmType::I64 | WasmType::PointerOrI64 => Self::I64,
            WasmType::F32 => Self::F32,
            WasmType::F64 => Self::F64,
        }
    }
}

/// A value of type `from` stored in a slot of the joined type `to` (canonical ABI
/// `lower_flat_variant`).
fn widen(expr: &str, from: Core, to: Core) -> String {
    match (from, to) {
        (a, b) if a == b => expr.to_owned(),
        (Core::I32, Core::I64) => format!("<i64><u32>({expr})"),
        (Core::F32, Core::I32) => format!("reinterpret<i32>({expr})"),
        (Core::F32, Core::I64) => format!("<i64><u32>reinterpret<i32>({expr})"),
        (Core::F64, Core::I64) => format!("reinterpret<i64>({expr})"),
        // `join` never makes other pairs.
        (from, to) => format!("/* unreachable widening {from:?} -> {to:?} */ ({expr})"),
    }
}

/// The inverse of [`widen`] (canonical ABI `lift_flat_variant`).
fn narrow(expr: &str, from: Core, to: Core) -> String {
    match (from, to) {
        (a, b) if a == b => expr.to_owned(),
        (Core::I64, Core::I32) => format!("<i32>({expr})"),
        (Core::I32, Core::F32) => format!("reinterpret<f32>({expr})"),
        (Core::I64, Core::F32) => format!("reinterpret<f32><i32>({expr})"),
        (Core::I64, Core::F64) => format!("reinterpret<f64>({expr})"),
        (from, to) => format!("/* unreachable narrowing {from:?} -> {to:?} */ ({expr})"),
    }
}

fn signature(params: &[Core], results: &[Core]) -> String {
    let list = |cores: &[Core]| cores.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
    format!("({}) -> ({})", list(params), list(results))
}

/// The cases of a variant-like type (variant, option, result), as the glue tests, reads and
/// builds them. `$` stands for the value in `test` and `get`; `{}` for the payload in `make`.
struct Case {
    payload: Option<Type>,
    test: String,
    get: String,
    make: String,
}

struct VariantShape {
    tag: Int,
    cases: Vec<Case>,
}

/// Words that cannot name an AssemblyScript local, parameter or top-level declaration.
const RESERVED: &[&str] = &[
    "abstract",
    "any",
    "as",
    "async",
    "await",
    "bigint",
    "bool",
    "boolean",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "constructor",
    "continue",
    "debugger",
    "declare",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "f32",
    "f64",
    "false",
    "finally",
    "for",
    "from",
    "function",
    "get",
    "i16",
    "i32",
    "i64",
    "i8",
    "if",
    "implements",
    "import",
    "in",
    "instanceof",
    "interface",
    "is",
    "isize",
    "keyof",
    "let",
    "module",
    "namespace",
    "never",
    "new",
    "null",
    "number",
    "object",
    "of",
    "package",
    "private",
    "protected",
    "public",
    "readonly",
    "return",
    "set",
    "static",
    "string",
    "super",
    "switch",
    "symbol",
    "this",
    "throw",
    "true",
    "try",
    "type",
    "typeof",
    "u16",
    "u32",
    "u64",
    "u8",
    "undefined",
    "unknown",
    "usize",
    "v128",
    "var",
    "void",
    "while",
    "with",
    "yield",
];

fn camel(name: &str, upper_first: bool) -> String {
    let mut out = String::new();
    for (i, part) in name.split('-').filter(|p| !p.is_empty()).enumerate() {
        let lower = part.to_ascii_lowercase();
        let mut chars = lower.chars();
        if let Some(first) = chars.next() {
            if i > 0 || upper_first {
                out.push(first.to_ascii_uppercase());
            } else {
                out.push(first);
            }
            out.extend(chars);
        }
    }
    out
}

/// `scalar-kind` -> `ScalarKind`.
fn upper(name: &str) -> String {
    camel(name, true)
}

/// `get-scalar` -> `getScalar`, escaped if reserved: for locals and parameters.
fn ident(name: &str) -> String {
    let name = camel(name, false);
    if RESERVED.contains(&name.as_str()) { format!("{name}_") } else { name }
}

/// `get-scalar` -> `getScalar`: for members (a member may be named `get` or `set`).
fn member(name: &str) -> String {
    let name = camel(name, false);
    if name == "constructor" { format!("{name}_") } else { name }
}

fn doc(docs: &Docs, indent: &str) -> String {
    let Some(contents) = docs.contents.as_deref() else { return String::new() };
    let contents = contents.trim_end().replace("*/", "*\\/");
    let mut out = format!("{indent}/**\n");
    for line in contents.lines() {
        if line.trim().is_empty() {
            let _ = writeln!(out, "{indent} *");
        } else {
            let _ = writeln!(out, "{indent} * {line}");
        }
    }
    let _ = writeln!(out, "{indent} */");
    out
}

fn int_size(int: Int) -> (&'static str, usize) {
    match int {
        Int::U8 => ("u8", 1),
        Int::U16 => ("u16", 2),
        Int::U32 => ("u32", 4),
        Int::U64 => ("u64", 8),
    }
}

/// The generator state.
pub struct Generator<'a> {
    resolve: &'a Resolve,
    world: WorldId,
    sizes: SizeAlign,
    /// Canonical-ABI helpers (load, store, lift and lower of compound types), by name.
    helpers: BTreeMap<String, String>,
    /// The `@external` declarations of the core imports.
    externs: String,
    /// Top-level names, to refuse a WIT whose names would clash.
    names: BTreeSet<String>,
    /// A counter for unique local names.
    tmp: usize,
    /// Size and alignment of the return area shared by imports (calls are not reentrant).
    import_ret: (usize, usize),
    /// Size and alignment of the return area of exports.
    export_ret: (usize, usize),
    imports: Vec<CoreImport>,
    exports: Vec<CoreExport>,
}

impl<'a> Generator<'a> {
    /// A generator for `world`.
    ///
    /// # Errors
    /// If the sizes of the WIT types cannot be computed.
    pub fn new(resolve: &'a Resolve, world: WorldId) -> Result<Self> {
        let mut sizes = SizeAlign::default();
        sizes.fill(resolve)?;
        Ok(Self {
            resolve,
            world,
            sizes,
            helpers: BTreeMap::new(),
            externs: String::new(),
            names: BTreeSet::new(),
            tmp: 0,
            import_ret: (0, 1),
            export_ret: (0, 1),
            imports: Vec::new(),
            exports: Vec::new(),
        })
    }

    /// Generates the glue.
    ///
    /// # Errors
    /// On a WIT feature the generator does not support, or a name clash.
    pub fn generate(mut self) -> Result<Generated> {
        let resolve = self.resolve;
        let world = &resolve.worlds[self.world];
        let world_id = world.package.map(|p| resolve.id_of_name(p, &world.name)).unwrap_or_else(|| world.name.clone());

        let mut body = String::new();
        for (key, item) in &world.imports {
            match item {
                WorldItem::Interface { id, .. } => body.push_str(&self.interface(key, *id)?),
                WorldItem::Function(f) => bail!("world-level imported functions are not supported (`{}`)", f.name),
                WorldItem::Type { id, .. } => body.push_str(&self.typedef(*id)?),
            }
        }
        let mut exports = String::new();
        for item in world.exports.values() {
            match item {
                WorldItem::Function(f) => exports.push_str(&self.export_function(f)?),
                WorldItem::Interface { id, .. } => bail!(
                    "interface exports are not supported (`{}`)",
                    resolve.interfaces[*id].name.as_deref().unwrap_or("<anonymous>")
                ),
                WorldItem::Type { id, .. } => body.push_str(&self.typedef(*id)?),
            }
        }

        let mut out = String::new();
        let _ = write!(
            out,
            "// Generated by wasmtx-as-bindgen from the project's WIT (world `{world_id}`): do not edit.\n\
             // Regenerate with `{regen}`; a test fails while this file is stale.\n\
             //\n\
             // The canonical ABI of the component model, with string encoding UTF-16: AssemblyScript\n\
             // classes for the WIT types, one wrapper per imported function, and the core export of each\n\
             // exported function. Rules do not use this file directly: the SDK's API wraps it.\n\
             /* eslint-disable */\n\n\
             import {{ Box, Result, Tuple1, Tuple2, Tuple3, Tuple4, Unit, __wasmtx_alloc, __wasmtx_lift_string, __wasmtx_load_string, __wasmtx_store_string }} from \"{CABI_MODULE}\";\n",
            regen = crate::REGENERATE,
        );
        let impl_names: Vec<String> = world
            .exports
            .values()
            .filter_map(|item| match item {
                WorldItem::Function(f) => Some(format!("{} as __impl_{}", member(&f.name), member(&f.name))),
                _ => None,
            })
            .collect();
        if !impl_names.is_empty() {
            let _ = writeln!(out, "import {{ {} }} from \"{EXPORTS_IMPL_MODULE}\";", impl_names.join(", "));
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "// The return area of imported functions whose results do not fit one core value (calls\n\
             // into the host are not reentrant, so one area serves them all).\n\
             const __RET_AREA: usize = memory.data({}, {});\n\
             // The return area of exported functions, read by the host after the export returns.\n\
             const __EXPORT_RET_AREA: usize = memory.data({}, {});\n",
            self.import_ret.0.max(1),
            self.import_ret.1,
            self.export_ret.0.max(1),
            self.export_ret.1
        );
        out.push_str("// ---- core imports\n\n");
        out.push_str(&self.externs);
        out.push('\n');
        out.push_str(&body);
        if !exports.is_empty() {
            out.push_str("// ---- exports of the world\n\n");
            out.push_str(&exports);
        }
        out.push_str("// ---- canonical ABI: memory layouts of compound types\n\n");
        for helper in self.helpers.values() {
            out.push_str(helper);
            out.push('\n');
        }
        Ok(Generated { bindings: out.trim_end().to_owned() + "\n", imports: self.imports, exports: self.exports })
    }

    fn claim(&mut self, name: &str) -> Result<()> {
        if !self.names.insert(name.to_owned()) {
            bail!("two WIT items map to the AssemblyScript name `{name}`");
        }
        Ok(())
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.tmp += 1;
        format!("__{prefix}{}", self.tmp)
    }

    // ---- types

    /// Follows `type a = b` aliases.
    fn dealias(&self, ty: &Type) -> Type {
        let mut ty = *ty;
        while let Type::Id(id) = ty {
            match &self.resolve.types[id].kind {
                TypeDefKind::Type(inner) => ty = *inner,
                _ => break,
            }
        }
        ty
    }

    fn dealias_id(&self, id: TypeId) -> TypeId {
        match self.dealias(&Type::Id(id)) {
            Type::Id(id) => id,
            _ => id,
        }
    }

    fn type_name(&self, id: TypeId) -> Result<String> {
        let def = &self.resolve.types[self.dealias_id(id)];
        match &def.name {
            Some(name) => Ok(upper(name)),
            None => bail!("an anonymous {} has no AssemblyScript name", def.kind.as_str()),
        }
    }

    /// The AssemblyScript type of a WIT type.
    fn ts(&self, ty: &Type) -> Result<String> {
        Ok(match self.dealias(ty) {
            Type::Bool => "bool".into(),
            Type::U8 => "u8".into(),
            Type::U16 => "u16".into(),
            Type::U32 | Type::Char => "u32".into(),
            Type::U64 => "u64".into(),
            Type::S8 => "i8".into(),
            Type::S16 => "i16".into(),
            Type::S32 => "i32".into(),
            Type::S64 => "i64".into(),
            Type::F32 => "f32".into(),
            Type::F64 => "f64".into(),
            Type::String => "string".into(),
            Type::ErrorContext => bail!("`error-context` is not supported"),
            Type::Id(id) => match &self.resolve.types[id].kind {
                TypeDefKind::Record(_) | TypeDefKind::Variant(_) | TypeDefKind::Enum(_) | TypeDefKind::Resource => {
                    self.type_name(id)?
                }
                TypeDefKind::Handle(Handle::Own(r) | Handle::Borrow(r)) => self.type_name(*r)?,
                TypeDefKind::List(t) => format!("Array<{}>", self.ts(t)?),
                TypeDefKind::Option(t) => {
                    if self.is_plain_ref(t) {
                        format!("{} | null", self.ts(t)?)
                    } else {
                        format!("Box<{}> | null", self.ts(t)?)
                    }
                }
                TypeDefKind::Result(r) => {
                    format!("Result<{}, {}>", self.ts_or_unit(r.ok.as_ref())?, self.ts_or_unit(r.err.as_ref())?)
                }
                TypeDefKind::Tuple(t) => {
                    if t.types.is_empty() || t.types.len() > MAX_TUPLE {
                        bail!("tuples of {} types are not supported (1 to {MAX_TUPLE})", t.types.len());
                    }
                    let inner = t.types.iter().map(|t| self.ts(t)).collect::<Result<Vec<_>>>()?;
                    format!("Tuple{}<{}>", t.types.len(), inner.join(", "))
                }
                other => bail!("WIT `{}` types are not supported", other.as_str()),
            },
        })
    }

    fn ts_or_unit(&self, ty: Option<&Type>) -> Result<String> {
        ty.map_or_else(|| Ok("Unit".to_owned()), |t| self.ts(t))
    }

    /// Whether the AssemblyScript type of `ty` is a reference type that cannot be null (so
    /// `option<ty>` can be `ty | null`).
    fn is_plain_ref(&self, ty: &Type) -> bool {
        match self.dealias(ty) {
            Type::String => true,
            Type::Id(id) => matches!(
                self.resolve.types[id].kind,
                TypeDefKind::Record(_)
                    | TypeDefKind::Variant(_)
                    | TypeDefKind::Resource
                    | TypeDefKind::Handle(_)
                    | TypeDefKind::List(_)
                    | TypeDefKind::Result(_)
                    | TypeDefKind::Tuple(_)
            ),
            _ => false,
        }
    }

    /// Whether the AssemblyScript type of `ty` is a reference type (nullable or not).
    fn is_ref(&self, ty: &Type) -> bool {
        self.is_plain_ref(ty)
            || matches!(self.dealias(ty), Type::Id(id) if matches!(self.resolve.types[id].kind, TypeDefKind::Option(_)))
    }

    /// The zero value of a non-reference AssemblyScript type.
    fn zero(&self, ty: &Type) -> Result<String> {
        Ok(match self.dealias(ty) {
            Type::Bool => "false".into(),
            Type::F32 | Type::F64 => "0.0".into(),
            Type::Id(id) if matches!(self.resolve.types[id].kind, TypeDefKind::Enum(_)) => {
                format!("<{}>0", self.type_name(id)?)
            }
            _ => "0".into(),
        })
    }

    /// A name for `ty` inside helper names: `list_Scalar`, `result_i64_AccessError`.
    fn mangle(&self, ty: &Type) -> Result<String> {
        Ok(match self.dealias(ty) {
            Type::Id(id) => match &self.resolve.types[id].kind {
                TypeDefKind::Record(_) | TypeDefKind::Variant(_) | TypeDefKind::Enum(_) | TypeDefKind::Resource => {
                    self.type_name(id)?
                }
                TypeDefKind::Handle(Handle::Own(r)) => format!("own_{}", self.type_name(*r)?),
                TypeDefKind::Handle(Handle::Borrow(r)) => format!("borrow_{}", self.type_name(*r)?),
                TypeDefKind::List(t) => format!("list_{}", self.mangle(t)?),
                TypeDefKind::Option(t) => format!("option_{}", self.mangle(t)?),
                TypeDefKind::Result(r) => format!(
                    "result_{}_{}",
                    r.ok.as_ref().map_or(Ok("unit".to_owned()), |t| self.mangle(t))?,
                    r.err.as_ref().map_or(Ok("unit".to_owned()), |t| self.mangle(t))?
                ),
                TypeDefKind::Tuple(t) => {
                    let inner = t.types.iter().map(|t| self.mangle(t)).collect::<Result<Vec<_>>>()?;
                    format!("tuple{}_{}", t.types.len(), inner.join("_"))
                }
                other => bail!("WIT `{}` types are not supported", other.as_str()),
            },
            other => self.ts(&other)?,
        })
    }

    fn size(&self, ty: &Type) -> usize {
        self.sizes.size(ty).size_wasm32()
    }

    fn align(&self, ty: &Type) -> usize {
        self.sizes.align(ty).align_wasm32()
    }

    /// The flattened core types of `ty`.
    fn flat(&self, ty: &Type) -> Result<Vec<Core>> {
        Ok(match self.dealias(ty) {
            Type::Bool | Type::U8 | Type::U16 | Type::U32 | Type::S8 | Type::S16 | Type::S32 | Type::Char => {
                vec![Core::I32]
            }
            Type::U64 | Type::S64 => vec![Core::I64],
            Type::F32 => vec![Core::F32],
            Type::F64 => vec![Core::F64],
            Type::String => vec![Core::I32, Core::I32],
            Type::ErrorContext => bail!("`error-context` is not supported"),
            Type::Id(id) => match &self.resolve.types[id].kind {
                TypeDefKind::Record(r) => {
                    let mut out = Vec::new();
                    for field in &r.fields {
                        out.extend(self.flat(&field.ty)?);
                    }
                    out
                }
                TypeDefKind::Tuple(t) => {
                    let mut out = Vec::new();
                    for ty in &t.types {
                        out.extend(self.flat(ty)?);
                    }
                    out
                }
                TypeDefKind::Enum(_) | TypeDefKind::Handle(_) => vec![Core::I32],
                TypeDefKind::List(_) => vec![Core::I32, Core::I32],
                TypeDefKind::Variant(_) | TypeDefKind::Option(_) | TypeDefKind::Result(_) => {
                    let shape = self.variant_shape(&Type::Id(id))?;
                    let mut joined: Vec<Core> = Vec::new();
                    for case in &shape.cases {
                        if let Some(payload) = &case.payload {
                            for (i, core) in self.flat(payload)?.into_iter().enumerate() {
                                match joined.get_mut(i) {
                                    Some(slot) => *slot = slot.join(core),
                                    None => joined.push(core),
                                }
                            }
                        }
                    }
                    let mut out = vec![Core::I32];
                    out.extend(joined);
                    out
                }
                other => bail!("WIT `{}` types are not supported", other.as_str()),
            },
        })
    }

    /// The cases of a variant, option or result.
    fn variant_shape(&self, ty: &Type) -> Result<VariantShape> {
        let Type::Id(id) = self.dealias(ty) else { bail!("not a variant") };
        let ts = self.ts(ty)?;
        Ok(match &self.resolve.types[id].kind {
            TypeDefKind::Variant(v) => {
                let name = self.type_name(id)?;
                VariantShape {
                    tag: v.tag(),
                    cases: v
                        .cases
                        .iter()
                        .map(|c| Case {
                            payload: c.ty,
                            test: format!("$.tag == {name}Tag.{}", upper(&c.name)),
                            get: format!("$.{}", case_member(&c.name)),
                            make: if c.ty.is_some() {
                                format!("{name}.{}({{}})", case_member(&c.name))
                            } else {
                                format!("{name}.{}()", case_member(&c.name))
                            },
                        })
                        .collect(),
                }
            }
            TypeDefKind::Option(t) => {
                let plain = self.is_plain_ref(t);
                let inner = self.ts(t)?;
                VariantShape {
                    tag: Int::U8,
                    cases: vec![
                        Case { payload: None, test: "$ == null".into(), get: String::new(), make: "null".into() },
                        Case {
                            payload: Some(*t),
                            test: "$ != null".into(),
                            // Not `$!`: the test above already narrowed `$`, and AssemblyScript
                            // remarks on a redundant `!`.
                            get: if plain {
                                format!("changetype<{inner}>($)")
                            } else {
                                format!("changetype<Box<{inner}>>($).value")
                            },
                            make: if plain { "{}".into() } else { format!("new Box<{inner}>({{}})") },
                        },
                    ],
                }
            }
            TypeDefKind::Result(r) => {
                let targs = ts.trim_start_matches("Result").to_owned();
                VariantShape {
                    tag: Int::U8,
                    cases: vec![
                        Case {
                            payload: r.ok,
                            test: "$.isOk".into(),
                            get: "$.ok".into(),
                            make: if r.ok.is_some() {
                                format!("Result.ok{targs}({{}})")
                            } else {
                                format!("Result.ok{targs}(0)")
                            },
                        },
                        Case {
                            payload: r.err,
                            test: "!$.isOk".into(),
                            get: "$.err".into(),
                            make: if r.err.is_some() {
                                format!("Result.err{targs}({{}})")
                            } else {
                                format!("Result.err{targs}(0)")
                            },
                        },
                    ],
                }
            }
            other => bail!("a WIT `{}` is not a variant", other.as_str()),
        })
    }

    // ---- type definitions

    fn interface(&mut self, key: &WorldKey, id: InterfaceId) -> Result<String> {
        let resolve = self.resolve;
        let iface = &resolve.interfaces[id];
        let module = resolve.name_world_key(key);
        let mut out = format!("// ---- interface {module}\n");
        for line in iface.docs.contents.as_deref().unwrap_or_default().lines() {
            let _ = writeln!(out, "// {line}");
        }
        out.push('\n');
        for &ty in iface.types.values() {
            if matches!(resolve.types[ty].kind, TypeDefKind::Resource) {
                out.push_str(&self.resource(&module, id, ty)?);
            } else {
                out.push_str(&self.typedef(ty)?);
            }
        }
        for func in iface.functions.values() {
            match func.kind {
                FunctionKind::Freestanding => {
                    let name = ident(&func.name);
                    self.claim(&name)?;
                    out.push_str(&doc(&func.docs, ""));
                    out.push_str(&self.import_function(&module, func, "", &format!("export function {name}"))?);
                    out.push('\n');
                }
                FunctionKind::Method(_) | FunctionKind::Static(_) => {} // in the resource's class
                _ => bail!("`{}`: only freestanding functions, methods and static functions are supported", func.name),
            }
        }
        Ok(out)
    }

    fn typedef(&mut self, id: TypeId) -> Result<String> {
        let def = &self.resolve.types[id];
        let Some(wit_name) = def.name.as_deref() else { return Ok(String::new()) };
        let name = upper(wit_name);
        let mut out = String::new();
        match &def.kind {
            // `use` aliases and `type a = b`: the glue uses the target's name.
            TypeDefKind::Type(_) => return Ok(String::new()),
            TypeDefKind::Record(r) => {
                self.claim(&name)?;
                out.push_str(&doc(&def.docs, ""));
                let _ = writeln!(out, "export class {name} {{\n  constructor(");
                for field in &r.fields {
                    out.push_str(&doc(&field.docs, "    "));
                    let _ = writeln!(out, "    public {}: {},", ident(&field.name), self.ts(&field.ty)?);
                }
                out.push_str("  ) {}\n}\n\n");
            }
            TypeDefKind::Enum(e) => {
                self.claim(&name)?;
                out.push_str(&doc(&def.docs, ""));
                let _ = writeln!(out, "export enum {name} {{");
                for (i, case) in e.cases.iter().enumerate() {
                    out.push_str(&doc(&case.docs, "  "));
                    let _ = writeln!(out, "  {} = {i},", upper(&case.name));
                }
                out.push_str("}\n\n");
            }
            TypeDefKind::Variant(v) => {
                let tag = format!("{name}Tag");
                self.claim(&name)?;
                self.claim(&tag)?;
                let _ = writeln!(out, "/** The cases of `{name}`. */\nexport enum {tag} {{");
                for (i, case) in v.cases.iter().enumerate() {
                    out.push_str(&doc(&case.docs, "  "));
                    let _ = writeln!(out, "  {} = {i},", upper(&case.name));
                }
                out.push_str("}\n\n");
                out.push_str(&doc(&def.docs, ""));
                let _ = writeln!(
                    out,
                    "export class {name} {{\n  private constructor(\n    /** Which case this value is. */\n    public readonly tag: {tag},\n  ) {{}}"
                );
                for case in &v.cases {
                    if let Some(payload) = &case.ty {
                        let field = format!("_{}", member(&case.name));
                        let ts = self.ts(payload)?;
                        if self.is_plain_ref(payload) {
                            let _ = writeln!(out, "  private {field}: {ts} | null = null;");
                        } else if self.is_ref(payload) {
                            let _ = writeln!(out, "  private {field}: {ts} = null;");
                        } else {
                            let _ = writeln!(out, "  private {field}: {ts} = {};", self.zero(payload)?);
                        }
                    }
                }
                for case in &v.cases {
                    let m = case_member(&case.name);
                    let case_tag = format!("{tag}.{}", upper(&case.name));
                    out.push('\n');
                    out.push_str(&doc(&case.docs, "  "));
                    match &case.ty {
                        Some(payload) => {
                            let ts = self.ts(payload)?;
                            let field = format!("_{}", member(&case.name));
                            let _ = writeln!(
                                out,
                                "  static {m}(value: {ts}): {name} {{\n    const v = new {name}({case_tag});\n    v.{field} = value;\n    return v;\n  }}"
                            );
                            let bang = if self.is_plain_ref(payload) { "!" } else { "" };
                            let _ = writeln!(
                                out,
                                "  /** The payload of `{}`: traps if this value is another case. */\n  get {m}(): {ts} {{\n    assert(this.tag == {case_tag}, \"{name} is not {}\");\n    return this.{field}{bang};\n  }}",
                                case.name, case.name
                            );
                        }
                        None => {
                            let _ =
                                writeln!(out, "  static {m}(): {name} {{\n    return new {name}({case_tag});\n  }}");
                        }
                    }
                }
                out.push_str("}\n\n");
            }
            TypeDefKind::Resource => bail!("resource `{wit_name}` outside an interface is not supported"),
            other => bail!("WIT `{}` types are not supported (`{wit_name}`)", other.as_str()),
        }
        Ok(out)
    }

    fn resource(&mut self, module: &str, iface: InterfaceId, id: TypeId) -> Result<String> {
        let resolve = self.resolve;
        let def = &resolve.types[id];
        let wit_name = def.name.clone().unwrap_or_default();
        let name = upper(&wit_name);
        self.claim(&name)?;
        let drop_name = format!("[resource-drop]{wit_name}");
        let drop_fn = extern_name(module, &drop_name);
        let mut out = String::new();
        let _ = writeln!(
            self.externs,
            "// @ts-ignore: decorator\n@external(\"{module}\", \"{drop_name}\")\ndeclare function {drop_fn}(handle: i32): void;"
        );
        self.imports.push(CoreImport {
            module: module.to_owned(),
            name: drop_name,
            signature: signature(&[Core::I32], &[]),
        });
        out.push_str(&doc(&def.docs, ""));
        let _ = writeln!(
            out,
            "export class {name} {{\n  /** Wraps a handle the host gave out. */\n  constructor(public readonly handle: i32) {{}}\n\n  /** Drops the handle: it must not be used afterwards. */\n  drop(): void {{\n    {drop_fn}(this.handle);\n  }}"
        );
        for func in resolve.interfaces[iface].functions.values() {
            let prefix = match func.kind {
                FunctionKind::Method(owner) if self.dealias_id(owner) == id => {
                    let m = member(func.item_name());
                    if m == "handle" || m == "drop" {
                        bail!("resource method `{}` clashes with the glue's `{m}`", func.name);
                    }
                    m
                }
                FunctionKind::Static(owner) if self.dealias_id(owner) == id => {
                    format!("static {}", member(func.item_name()))
                }
                FunctionKind::Constructor(owner) if self.dealias_id(owner) == id => {
                    bail!("resource constructors are not supported (`{}`)", func.name)
                }
                _ => continue,
            };
            out.push('\n');
            out.push_str(&doc(&func.docs, "  "));
            out.push_str(&self.import_function(module, func, "  ", &prefix)?);
        }
        out.push_str("}\n\n");
        Ok(out)
    }

    // ---- functions

    /// An imported function's wrapper: `head(params): result { lower; call; lift }`.
    fn import_function(&mut self, module: &str, func: &Function, indent: &str, head: &str) -> Result<String> {
        let is_method = matches!(func.kind, FunctionKind::Method(_));
        let mut flat_params = Vec::new();
        for param in &func.params {
            flat_params.extend(self.flat(&param.ty)?);
        }
        let indirect = flat_params.len() > MAX_FLAT_PARAMS;
        let flat_results = match &func.result {
            Some(ty) => self.flat(ty)?,
            None => Vec::new(),
        };
        let retptr = flat_results.len() > MAX_FLAT_RESULTS;

        let mut core_params = if indirect { vec![Core::I32] } else { flat_params.clone() };
        if retptr {
            core_params.push(Core::I32);
        }
        let core_results = if retptr { Vec::new() } else { flat_results.clone() };
        self.check_signature(func, AbiVariant::GuestImport, &core_params, &core_results)?;

        let ext = extern_name(module, &func.name);
        self.imports.push(CoreImport {
            module: module.to_owned(),
            name: func.name.clone(),
            signature: signature(&core_params, &core_results),
        });
        let ext_params: Vec<String> =
            core_params.iter().enumerate().map(|(i, c)| format!("p{i}: {}", c.name())).collect();
        let ext_result = core_results.first().map_or("void", |c| c.name());
        let mut out = String::new();
        let decl = format!(
            "// @ts-ignore: decorator\n@external(\"{module}\", \"{}\")\ndeclare function {ext}({}): {ext_result};\n",
            func.name,
            ext_params.join(", ")
        );

        let params: Vec<(String, &Type)> = func
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| (if is_method && i == 0 { "this".to_owned() } else { ident(&p.name) }, &p.ty))
            .collect();
        let signature_params = params
            .iter()
            .filter(|(name, _)| name != "this")
            .map(|(name, ty)| Ok(format!("{name}: {}", self.ts(ty)?)))
            .collect::<Result<Vec<_>>>()?;
        let result_ts = match &func.result {
            Some(ty) => self.ts(ty)?,
            None => "void".into(),
        };
        let inner = format!("{indent}  ");
        let mut body = String::new();
        let mut args = Vec::new();
        if indirect {
            let types: Vec<&Type> = params.iter().map(|(_, ty)| *ty).collect();
            let info = self.sizes.record(types.iter().copied());
            let area = self.fresh("params");
            let _ = writeln!(body, "{inner}const {area} = __wasmtx_alloc({});", info.size.size_wasm32());
            let offsets = self.sizes.field_offsets(types.iter().copied());
            for ((offset, ty), (name, _)) in offsets.into_iter().zip(&params) {
                let stmt = self.store(ty, &format!("{area} + {}", offset.size_wasm32()), name)?;
                let _ = writeln!(body, "{inner}{stmt}");
            }
            args.push(format!("<i32>{area}"));
        } else {
            let mut slots = Vec::new();
            for (name, ty) in &params {
                self.lower_flat(ty, name, &mut body, &inner, &mut slots)?;
            }
            args.extend(slots.into_iter().map(|(expr, _)| expr));
        }
        if retptr {
            args.push("<i32>__RET_AREA".into());
            let result = func.result.as_ref().map(|t| (self.size(t), self.align(t))).unwrap_or((0, 1));
            self.import_ret = (self.import_ret.0.max(result.0), self.import_ret.1.max(result.1));
        }
        let call = format!("{ext}({})", args.join(", "));
        match (&func.result, retptr, core_results.first()) {
            (None, _, _) => {
                let _ = writeln!(body, "{inner}{call};");
            }
            (Some(ty), true, _) => {
                let _ = writeln!(body, "{inner}{call};");
                let load = self.load(ty, "__RET_AREA")?;
                let _ = writeln!(body, "{inner}return {load};");
            }
            (Some(ty), false, Some(core)) => {
                let r = self.fresh("r");
                let _ = writeln!(body, "{inner}const {r} = {call};");
                let mut slots = VecDeque::from([(r, *core)]);
                let value = self.lift_flat(ty, &mut slots, &mut body, &inner)?;
                let _ = writeln!(body, "{inner}return {value};");
            }
            (Some(_), false, None) => bail!("`{}`: a result with no core value", func.name),
        }
        self.externs.push_str(&decl);
        let _ = writeln!(out, "{indent}{head}({}): {result_ts} {{", signature_params.join(", "));
        out.push_str(&body);
        let _ = writeln!(out, "{indent}}}");
        Ok(out)
    }

    /// A world-level exported function: the core export that lifts the arguments, calls
    /// `__impl_<name>` (from the SDK's `rule.ts`) and lowers its result.
    fn export_function(&mut self, func: &Function) -> Result<String> {
        if !matches!(func.kind, FunctionKind::Freestanding) {
            bail!("`{}`: only freestanding functions can be exported", func.name);
        }
        let name = member(&func.name);
        if name != func.name {
            bail!("the export `{}` is not an AssemblyScript identifier", func.name);
        }
        self.claim(&name)?;
        let mut flat_params = Vec::new();
        for param in &func.params {
            flat_params.extend(self.flat(&param.ty)?);
        }
        let indirect = flat_params.len() > MAX_FLAT_PARAMS;
        let flat_results = match &func.result {
            Some(ty) => self.flat(ty)?,
            None => Vec::new(),
        };
        let retptr = flat_results.len() > MAX_FLAT_RESULTS;
        let core_params = if indirect { vec![Core::I32] } else { flat_params };
        let core_results = if retptr { vec![Core::I32] } else { flat_results };
        self.check_signature(func, AbiVariant::GuestExport, &core_params, &core_results)?;
        self.exports.push(CoreExport { name: func.name.clone(), signature: signature(&core_params, &core_results) });

        let mut body = String::new();
        let inner = "  ";
        let mut args = Vec::new();
        if indirect {
            let types: Vec<&Type> = func.params.iter().map(|p| &p.ty).collect();
            let offsets = self.sizes.field_offsets(types.iter().copied());
            for (offset, ty) in offsets {
                let value = self.load(ty, &format!("<usize>p0 + {}", offset.size_wasm32()))?;
                let arg = self.fresh("a");
                let _ = writeln!(body, "{inner}const {arg} = {value};");
                args.push(arg);
            }
        } else {
            let mut slots: VecDeque<(String, Core)> =
                core_params.iter().enumerate().map(|(i, c)| (format!("p{i}"), *c)).collect();
            for param in &func.params {
                let value = self.lift_flat(&param.ty, &mut slots, &mut body, inner)?;
                let arg = self.fresh("a");
                let _ = writeln!(body, "{inner}const {arg} = {value};");
                args.push(arg);
            }
        }
        let call = format!("__impl_{name}({})", args.join(", "));
        match &func.result {
            None => {
                let _ = writeln!(body, "{inner}{call};");
            }
            Some(ty) if retptr => {
                let r = self.fresh("r");
                let _ = writeln!(body, "{inner}const {r} = {call};");
                let stmt = self.store(ty, "__EXPORT_RET_AREA", &r)?;
                let _ = writeln!(body, "{inner}{stmt}\n{inner}return <i32>__EXPORT_RET_AREA;");
                self.export_ret = (self.export_ret.0.max(self.size(ty)), self.export_ret.1.max(self.align(ty)));
            }
            Some(ty) => {
                let r = self.fresh("r");
                let _ = writeln!(body, "{inner}const {r} = {call};");
                let mut slots = Vec::new();
                self.lower_flat(ty, &r, &mut body, inner, &mut slots)?;
                let expr = slots.first().map(|(expr, _)| expr.clone()).unwrap_or_default();
                let _ = writeln!(body, "{inner}return {expr};");
            }
        }
        let params: Vec<String> = core_params.iter().enumerate().map(|(i, c)| format!("p{i}: {}", c.name())).collect();
        let result = core_results.first().map_or("void", |c| c.name());
        let mut out = doc(&func.docs, "");
        let _ = writeln!(
            out,
            "// The core export `{}`: lifts the arguments, calls the SDK's `{name}` and lowers its result.\nexport function {name}({}): {result} {{",
            func.name,
            params.join(", ")
        );
        out.push_str(&body);
        out.push_str("}\n\n");
        Ok(out)
    }

    /// Refuses to generate if this generator's flattening disagrees with wit-parser's.
    fn check_signature(&self, func: &Function, variant: AbiVariant, params: &[Core], results: &[Core]) -> Result<()> {
        let sig = self.resolve.wasm_signature(variant, func);
        let expected_params: Vec<Core> = sig.params.iter().map(|t| Core::from_wasm(*t)).collect();
        let expected_results: Vec<Core> = sig.results.iter().map(|t| Core::from_wasm(*t)).collect();
        if expected_params != params || expected_results != results {
            bail!(
                "`{}`: computed core signature {} but wit-parser says {}",
                func.name,
                signature(params, results),
                signature(&expected_params, &expected_results)
            );
        }
        Ok(())
    }

    // ---- flat lowering and lifting

    /// Lowers `value` (an AssemblyScript expression of the type of `ty`) into flat core values,
    /// pushing `(expression, core type)` onto `out` and any statements onto `body`.
    fn lower_flat(
        &mut self,
        ty: &Type,
        value: &str,
        body: &mut String,
        indent: &str,
        out: &mut Vec<(String, Core)>,
    ) -> Result<()> {
        match self.dealias(ty) {
            Type::Bool => out.push((format!("({value} ? 1 : 0)"), Core::I32)),
            Type::U8 | Type::U16 | Type::U32 | Type::S8 | Type::S16 | Type::S32 | Type::Char => {
                out.push((format!("<i32>({value})"), Core::I32))
            }
            Type::U64 | Type::S64 => out.push((format!("<i64>({value})"), Core::I64)),
            Type::F32 => out.push((format!("<f32>({value})"), Core::F32)),
            Type::F64 => out.push((format!("<f64>({value})"), Core::F64)),
            Type::String => {
                let s = self.bind(value, body, indent);
                out.push((format!("<i32>changetype<usize>({s})"), Core::I32));
                out.push((format!("{s}.length"), Core::I32));
            }
            Type::ErrorContext => bail!("`error-context` is not supported"),
            Type::Id(id) => match &self.resolve.types[id].kind {
                TypeDefKind::Enum(_) => out.push((format!("<i32>({value})"), Core::I32)),
                TypeDefKind::Handle(_) => out.push((format!("({value}).handle"), Core::I32)),
                TypeDefKind::List(elem) => {
                    let l = self.bind(value, body, indent);
                    let lower = self.list_lower_helper(elem)?;
                    out.push((format!("<i32>{lower}({l})"), Core::I32));
                    out.push((format!("{l}.length"), Core::I32));
                }
                TypeDefKind::Record(r) => {
                    let v = self.bind(value, body, indent);
                    for field in &r.fields {
                        self.lower_flat(&field.ty, &format!("{v}.{}", ident(&field.name)), body, indent, out)?;
                    }
                }
                TypeDefKind::Tuple(t) => {
                    let v = self.bind(value, body, indent);
                    for (i, ty) in t.types.iter().enumerate() {
                        self.lower_flat(ty, &format!("{v}.f{i}"), body, indent, out)?;
                    }
                }
                TypeDefKind::Variant(_) | TypeDefKind::Option(_) | TypeDefKind::Result(_) => {
                    let flat = self.flat(ty)?;
                    let shape = self.variant_shape(ty)?;
                    let v = self.bind(value, body, indent);
                    let slots: Vec<String> = (0..flat.len()).map(|_| self.fresh("f")).collect();
                    for (slot, core) in slots.iter().zip(&flat) {
                        let zero = if matches!(core, Core::F32 | Core::F64) { "0.0" } else { "0" };
                        let _ = writeln!(body, "{indent}let {slot}: {} = {zero};", core.name());
                    }
                    for (i, case) in shape.cases.iter().enumerate() {
                        let keyword = if i == 0 { "if" } else { "} else if" };
                        let _ = writeln!(body, "{indent}{keyword} ({}) {{", case.test.replace('$', &v));
                        let inner = format!("{indent}  ");
                        let _ = writeln!(body, "{inner}{} = {i};", slots[0]);
                        if let Some(payload) = &case.payload {
                            let mut case_slots = Vec::new();
                            self.lower_flat(payload, &case.get.replace('$', &v), body, &inner, &mut case_slots)?;
                            for (j, (expr, core)) in case_slots.into_iter().enumerate() {
                                let _ =
                                    writeln!(body, "{inner}{} = {};", slots[j + 1], widen(&expr, core, flat[j + 1]));
                            }
                        }
                    }
                    let _ = writeln!(body, "{indent}}} else {{\n{indent}  unreachable();\n{indent}}}");
                    out.extend(slots.into_iter().zip(flat));
                }
                other => bail!("WIT `{}` types are not supported", other.as_str()),
            },
        }
        Ok(())
    }

    /// Lifts a value of `ty` from flat core values taken from the front of `slots`, returning an
    /// AssemblyScript expression (statements go to `body`).
    fn lift_flat(
        &mut self,
        ty: &Type,
        slots: &mut VecDeque<(String, Core)>,
        body: &mut String,
        indent: &str,
    ) -> Result<String> {
        let mut next =
            || slots.pop_front().map(|(expr, _)| expr).ok_or_else(|| anyhow::anyhow!("ran out of flat values"));
        Ok(match self.dealias(ty) {
            Type::Bool => format!("({} != 0)", next()?),
            Type::U8 => format!("<u8>({})", next()?),
            Type::U16 => format!("<u16>({})", next()?),
            Type::U32 | Type::Char => format!("<u32>({})", next()?),
            Type::S8 => format!("<i8>({})", next()?),
            Type::S16 => format!("<i16>({})", next()?),
            Type::S32 => format!("<i32>({})", next()?),
            Type::U64 => format!("<u64>({})", next()?),
            Type::S64 => format!("<i64>({})", next()?),
            Type::F32 => format!("<f32>({})", next()?),
            Type::F64 => format!("<f64>({})", next()?),
            Type::String => {
                let (ptr, len) = (next()?, next()?);
                format!("__wasmtx_lift_string(<usize><u32>({ptr}), <usize><u32>({len}))")
            }
            Type::ErrorContext => bail!("`error-context` is not supported"),
            Type::Id(id) => match &self.resolve.types[id].kind {
                TypeDefKind::Enum(_) => format!("<{}>({})", self.type_name(id)?, next()?),
                TypeDefKind::Handle(Handle::Own(r) | Handle::Borrow(r)) => {
                    format!("new {}({})", self.type_name(*r)?, next()?)
                }
                TypeDefKind::List(elem) => {
                    let (ptr, len) = (next()?, next()?);
                    let lift = self.list_lift_helper(elem)?;
                    format!("{lift}(<usize><u32>({ptr}), <usize><u32>({len}))")
                }
                TypeDefKind::Record(r) => {
                    let name = self.type_name(id)?;
                    let mut fields = Vec::new();
                    for field in &r.fields {
                        fields.push(self.lift_flat(&field.ty, slots, body, indent)?);
                    }
                    format!("new {name}({})", fields.join(", "))
                }
                TypeDefKind::Tuple(t) => {
                    let name = self.ts(ty)?;
                    let mut fields = Vec::new();
                    for ty in &t.types {
                        fields.push(self.lift_flat(ty, slots, body, indent)?);
                    }
                    format!("new {name}({})", fields.join(", "))
                }
                TypeDefKind::Variant(_) | TypeDefKind::Option(_) | TypeDefKind::Result(_) => {
                    let flat = self.flat(ty)?;
                    let shape = self.variant_shape(ty)?;
                    let ts = self.ts(ty)?;
                    let taken: Vec<(String, Core)> = (0..flat.len())
                        .map(|_| slots.pop_front())
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| anyhow::anyhow!("ran out of flat values"))?;
                    let r = self.fresh("v");
                    let _ = writeln!(body, "{indent}let {r}: {ts} = changetype<{ts}>(0);");
                    for (i, case) in shape.cases.iter().enumerate() {
                        let keyword = if i == 0 { "if" } else { "} else if" };
                        let _ = writeln!(body, "{indent}{keyword} ({} == {i}) {{", taken[0].0);
                        let inner = format!("{indent}  ");
                        let value = match &case.payload {
                            Some(payload) => {
                                let payload_flat = self.flat(payload)?;
                                let mut case_slots: VecDeque<(String, Core)> = payload_flat
                                    .iter()
                                    .enumerate()
                                    .map(|(j, core)| (narrow(&taken[j + 1].0, flat[j + 1], *core), *core))
                                    .collect();
                                let payload = self.lift_flat(payload, &mut case_slots, body, &inner)?;
                                case.make.replace("{}", &payload)
                            }
                            None => case.make.clone(),
                        };
                        let _ = writeln!(body, "{inner}{r} = {value};");
                    }
                    let _ = writeln!(body, "{indent}}} else {{\n{indent}  unreachable();\n{indent}}}");
                    r
                }
                other => bail!("WIT `{}` types are not supported", other.as_str()),
            },
        })
    }

    /// Binds `value` to a fresh local unless it already is a plain name.
    fn bind(&mut self, value: &str, body: &mut String, indent: &str) -> String {
        if value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return value.to_owned();
        }
        let local = self.fresh("t");
        let _ = writeln!(body, "{indent}const {local} = {value};");
        local
    }

    // ---- memory layouts

    /// An expression loading a value of `ty` stored at `ptr`.
    fn load(&mut self, ty: &Type, ptr: &str) -> Result<String> {
        Ok(match self.dealias(ty) {
            Type::Bool => format!("(load<u8>({ptr}) != 0)"),
            Type::U8 => format!("load<u8>({ptr})"),
            Type::U16 => format!("load<u16>({ptr})"),
            Type::U32 | Type::Char => format!("load<u32>({ptr})"),
            Type::U64 => format!("load<u64>({ptr})"),
            Type::S8 => format!("load<i8>({ptr})"),
            Type::S16 => format!("load<i16>({ptr})"),
            Type::S32 => format!("load<i32>({ptr})"),
            Type::S64 => format!("load<i64>({ptr})"),
            Type::F32 => format!("load<f32>({ptr})"),
            Type::F64 => format!("load<f64>({ptr})"),
            Type::String => format!("__wasmtx_load_string({ptr})"),
            Type::ErrorContext => bail!("`error-context` is not supported"),
            Type::Id(id) => match &self.resolve.types[id].kind {
                TypeDefKind::Enum(e) => format!("<{}>load<{}>({ptr})", self.type_name(id)?, int_size(e.tag()).0),
                TypeDefKind::Handle(Handle::Own(r) | Handle::Borrow(r)) => {
                    format!("new {}(load<i32>({ptr}))", self.type_name(*r)?)
                }
                _ => {
                    let helper = self.load_helper(ty)?;
                    format!("{helper}({ptr})")
                }
            },
        })
    }

    /// A statement storing `value` (of the type of `ty`) at `ptr`.
    fn store(&mut self, ty: &Type, ptr: &str, value: &str) -> Result<String> {
        Ok(match self.dealias(ty) {
            Type::Bool => format!("store<u8>({ptr}, {value} ? 1 : 0);"),
            Type::U8 => format!("store<u8>({ptr}, {value});"),
            Type::U16 => format!("store<u16>({ptr}, {value});"),
            Type::U32 | Type::Char => format!("store<u32>({ptr}, {value});"),
            Type::U64 => format!("store<u64>({ptr}, {value});"),
            Type::S8 => format!("store<i8>({ptr}, {value});"),
            Type::S16 => format!("store<i16>({ptr}, {value});"),
            Type::S32 => format!("store<i32>({ptr}, {value});"),
            Type::S64 => format!("store<i64>({ptr}, {value});"),
            Type::F32 => format!("store<f32>({ptr}, {value});"),
            Type::F64 => format!("store<f64>({ptr}, {value});"),
            Type::String => format!("__wasmtx_store_string({ptr}, {value});"),
            Type::ErrorContext => bail!("`error-context` is not supported"),
            Type::Id(id) => match &self.resolve.types[id].kind {
                TypeDefKind::Enum(e) => {
                    let (int, _) = int_size(e.tag());
                    format!("store<{int}>({ptr}, <{int}>({value}));")
                }
                TypeDefKind::Handle(_) => format!("store<i32>({ptr}, ({value}).handle);"),
                _ => {
                    let helper = self.store_helper(ty)?;
                    format!("{helper}({ptr}, {value});")
                }
            },
        })
    }

    fn load_helper(&mut self, ty: &Type) -> Result<String> {
        let name = format!("__load_{}", self.mangle(ty)?);
        if self.helpers.contains_key(&name) {
            return Ok(name);
        }
        self.helpers.insert(name.clone(), String::new()); // reserve (WIT types are not recursive)
        let ts = self.ts(ty)?;
        let Type::Id(id) = self.dealias(ty) else { bail!("no load helper for a primitive") };
        let mut out = format!("function {name}(ptr: usize): {ts} {{\n");
        match &self.resolve.types[id].kind {
            TypeDefKind::Record(r) => {
                let types: Vec<&Type> = r.fields.iter().map(|f| &f.ty).collect();
                let mut fields = Vec::new();
                for (offset, ty) in self.sizes.field_offsets(types) {
                    fields.push(self.load(ty, &format!("ptr + {}", offset.size_wasm32()))?);
                }
                let _ = writeln!(out, "  return new {ts}({});", fields.join(", "));
            }
            TypeDefKind::Tuple(t) => {
                let mut fields = Vec::new();
                for (offset, ty) in self.sizes.field_offsets(&t.types) {
                    fields.push(self.load(ty, &format!("ptr + {}", offset.size_wasm32()))?);
                }
                let _ = writeln!(out, "  return new {ts}({});", fields.join(", "));
            }
            TypeDefKind::List(elem) => {
                let lift = self.list_lift_helper(elem)?;
                let _ = writeln!(out, "  return {lift}(<usize>load<u32>(ptr), <usize>load<u32>(ptr + 4));");
            }
            TypeDefKind::Variant(_) | TypeDefKind::Option(_) | TypeDefKind::Result(_) => {
                let shape = self.variant_shape(ty)?;
                let payload_offset =
                    self.sizes.payload_offset(shape.tag, shape.cases.iter().map(|c| c.payload.as_ref())).size_wasm32();
                let (tag, _) = int_size(shape.tag);
                let _ = writeln!(out, "  const tag = load<{tag}>(ptr);");
                for (i, case) in shape.cases.iter().enumerate() {
                    let value = match &case.payload {
                        Some(payload) => {
                            let loaded = self.load(payload, &format!("ptr + {payload_offset}"))?;
                            case.make.replace("{}", &loaded)
                        }
                        None => case.make.clone(),
                    };
                    let _ = writeln!(out, "  if (tag == {i}) return {value};");
                }
                out.push_str("  return unreachable();\n");
            }
            other => bail!("WIT `{}` types are not supported", other.as_str()),
        }
        out.push_str("}\n");
        self.helpers.insert(name.clone(), out);
        Ok(name)
    }

    fn store_helper(&mut self, ty: &Type) -> Result<String> {
        let name = format!("__store_{}", self.mangle(ty)?);
        if self.helpers.contains_key(&name) {
            return Ok(name);
        }
        self.helpers.insert(name.clone(), String::new());
        let ts = self.ts(ty)?;
        let Type::Id(id) = self.dealias(ty) else { bail!("no store helper for a primitive") };
        let mut out = format!("function {name}(ptr: usize, v: {ts}): void {{\n");
        match &self.resolve.types[id].kind {
            TypeDefKind::Record(r) => {
                let types: Vec<&Type> = r.fields.iter().map(|f| &f.ty).collect();
                let offsets = self.sizes.field_offsets(types);
                for ((offset, ty), field) in offsets.into_iter().zip(&r.fields) {
                    let stmt = self.store(
                        ty,
                        &format!("ptr + {}", offset.size_wasm32()),
                        &format!("v.{}", ident(&field.name)),
                    )?;
                    let _ = writeln!(out, "  {stmt}");
                }
            }
            TypeDefKind::Tuple(t) => {
                for (i, (offset, ty)) in self.sizes.field_offsets(&t.types).into_iter().enumerate() {
                    let stmt = self.store(ty, &format!("ptr + {}", offset.size_wasm32()), &format!("v.f{i}"))?;
                    let _ = writeln!(out, "  {stmt}");
                }
            }
            TypeDefKind::List(elem) => {
                let lower = self.list_lower_helper(elem)?;
                let _ = writeln!(out, "  store<u32>(ptr, <u32>{lower}(v));\n  store<u32>(ptr + 4, <u32>v.length);");
            }
            TypeDefKind::Variant(_) | TypeDefKind::Option(_) | TypeDefKind::Result(_) => {
                let shape = self.variant_shape(ty)?;
                let payload_offset =
                    self.sizes.payload_offset(shape.tag, shape.cases.iter().map(|c| c.payload.as_ref())).size_wasm32();
                let (tag, _) = int_size(shape.tag);
                for (i, case) in shape.cases.iter().enumerate() {
                    let keyword = if i == 0 { "if" } else { "} else if" };
                    let _ = writeln!(out, "  {keyword} ({}) {{", case.test.replace('$', "v"));
                    let _ = writeln!(out, "    store<{tag}>(ptr, {i});");
                    if let Some(payload) = &case.payload {
                        let stmt =
                            self.store(payload, &format!("ptr + {payload_offset}"), &case.get.replace('$', "v"))?;
                        let _ = writeln!(out, "    {stmt}");
                    }
                }
                out.push_str("  } else {\n    unreachable();\n  }\n");
            }
            other => bail!("WIT `{}` types are not supported", other.as_str()),
        }
        out.push_str("}\n");
        self.helpers.insert(name.clone(), out);
        Ok(name)
    }

    /// `__lift_list_<T>(ptr, len)`: an array from `len` elements stored at `ptr`.
    fn list_lift_helper(&mut self, elem: &Type) -> Result<String> {
        let name = format!("__lift_list_{}", self.mangle(elem)?);
        if self.helpers.contains_key(&name) {
            return Ok(name);
        }
        self.helpers.insert(name.clone(), String::new());
        let ts = self.ts(elem)?;
        let size = self.size(elem);
        let load = self.load(elem, &format!("ptr + i * {size}"))?;
        let out = format!(
            "function {name}(ptr: usize, len: usize): Array<{ts}> {{\n  const out = new Array<{ts}>(<i32>len);\n  for (let i: usize = 0; i < len; i++) {{\n    unchecked((out[<i32>i] = {load}));\n  }}\n  return out;\n}}\n"
        );
        self.helpers.insert(name.clone(), out);
        Ok(name)
    }

    /// `__lower_list_<T>(array)`: the address of a fresh copy of `array` in the canonical layout.
    fn list_lower_helper(&mut self, elem: &Type) -> Result<String> {
        let name = format!("__lower_list_{}", self.mangle(elem)?);
        if self.helpers.contains_key(&name) {
            return Ok(name);
        }
        self.helpers.insert(name.clone(), String::new());
        let ts = self.ts(elem)?;
        let size = self.size(elem);
        let store = self.store(elem, &format!("base + <usize>i * {size}"), "unchecked(v[i])")?;
        let out = format!(
            "function {name}(v: Array<{ts}>): usize {{\n  const base = __wasmtx_alloc(<usize>v.length * {size});\n  for (let i = 0; i < v.length; i++) {{\n    {store}\n  }}\n  return base;\n}}\n"
        );
        self.helpers.insert(name.clone(), out);
        Ok(name)
    }
}

/// The AssemblyScript name of a core import: `[method]model.get-scalar` of
/// `wasmtx:rule/models@0.1.0` is `__wasmtx_models_method_model_get_scalar`.
fn extern_name(module: &str, name: &str) -> String {
    let interface = module.rsplit('/').next().unwrap_or(module);
    let interface = interface.split('@').next().unwrap_or(interface);
    let raw = format!("{interface}_{name}");
    let mut out = String::from("__wasmtx_");
    let mut last_underscore = true;
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            last_underscore = false;
        } else if !last_underscore {
            out.push('_');
            last_underscore = true;
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// The static factory and getter of a variant case (`unknown-field` -> `unknownField`); `tag`
/// is the glue's own.
fn case_member(name: &str) -> String {
    let m = member(name);
    if m == "tag" { "tag_".into() } else { m }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(wit: &str) -> Result<Generated> {
        let mut resolve = Resolve::default();
        let package = resolve.push_str("test.wit", wit)?;
        let world = resolve.select_world(&[package], Some("rule"))?;
        Generator::new(&resolve, world)?.generate()
    }

    const LAYOUTS: &str = r#"
        package test:layouts@0.1.0;
        interface host {
            record rec { a: u8, b: u64, c: string }
            variant v { nothing, small(u8), wide(f64), text(string) }
            long-ok: func() -> result<s64, string>;
            text-ok: func() -> result<string, u8>;
            mixed: func(x: option<f32>, y: v) -> u32;
            maybe: func(a: rec) -> option<u8>;
            many: func(xs: list<rec>);
        }
        world rule {
            import host;
            export run: func(x: u32) -> u64;
        }
    "#;

    #[test]
    fn result_payloads_sit_after_the_discriminant_at_their_alignment() -> Result<()> {
        let glue = generate(LAYOUTS)?.bindings;
        // The pitfalls of hand-written glue: an s64 payload at 8, a string payload at 4.
        assert!(glue.contains("Result.ok<i64, string>(load<i64>(ptr + 8))"), "{glue}");
        assert!(glue.contains("Result.err<i64, string>(__wasmtx_load_string(ptr + 8))"), "{glue}");
        assert!(glue.contains("Result.ok<string, u8>(__wasmtx_load_string(ptr + 4))"), "{glue}");
        assert!(glue.contains("Result.err<string, u8>(load<u8>(ptr + 4))"), "{glue}");
        // option<u8>: the payload right after the one-byte discriminant.
        assert!(glue.contains("return new Box<u8>(load<u8>(ptr + 1))"), "{glue}");
        Ok(())
    }

    #[test]
    fn records_in_memory_follow_field_alignment() -> Result<()> {
        let glue = generate(LAYOUTS)?.bindings;
        assert!(glue.contains("store<u8>(ptr + 0, v.a);"), "{glue}");
        assert!(glue.contains("store<u64>(ptr + 8, v.b);"), "{glue}");
        assert!(glue.contains("__wasmtx_store_string(ptr + 16, v.c);"), "{glue}");
        assert!(glue.contains("__wasmtx_alloc(<usize>v.length * 24)"), "{glue}");
        Ok(())
    }

    #[test]
    fn variants_flatten_to_joined_slots() -> Result<()> {
        let generated = generate(LAYOUTS)?;
        let glue = &generated.bindings;
        // option<f32> is (i32, f32); v is (i32, i64, i32): u8 and f64 join to i64.
        let mixed = generated.imports.iter().find(|i| i.name == "mixed").map(|i| i.signature.clone());
        assert_eq!(mixed.as_deref(), Some("(i32, f32, i32, i64, i32) -> (i32)"));
        assert!(glue.contains("reinterpret<i64>(<f64>("), "an f64 payload is bit-cast into the i64 slot");
        assert!(glue.contains("<i64><u32>(<i32>("), "a u8 payload is zero-extended into the i64 slot");
        // A record of three fields flattens whole; an option<u8> result comes back through memory.
        let maybe = generated.imports.iter().find(|i| i.name == "maybe").map(|i| i.signature.clone());
        assert_eq!(maybe.as_deref(), Some("(i32, i64, i32, i32, i32) -> ()"));
        let run = generated.exports.iter().find(|e| e.name == "run").map(|e| e.signature.clone());
        assert_eq!(run.as_deref(), Some("(i32) -> (i64)"));
        Ok(())
    }

    #[test]
    fn unsupported_wit_is_refused_by_name() {
        let wit = r#"
            package test:flags@0.1.0;
            interface host {
                flags perms { read, write }
                check: func(p: perms);
            }
            world rule { import host; }
        "#;
        let error = generate(wit).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("flags"), "{error}");
    }

    #[test]
    fn names() {
        assert_eq!(upper("index-out-of-range"), "IndexOutOfRange");
        assert_eq!(ident("model-type"), "modelType");
        assert_eq!(ident("type"), "type_");
        assert_eq!(member("get"), "get");
        assert_eq!(
            extern_name("wasmtx:rule/models@0.1.0", "[method]model.get-scalar"),
            "__wasmtx_models_method_model_get_scalar"
        );
        assert_eq!(
            extern_name("wasmtx:rule/models@0.1.0", "[resource-drop]model"),
            "__wasmtx_models_resource_drop_model"
        );
    }
}
