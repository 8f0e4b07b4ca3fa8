//! `#[derive(Model)]` for wasmtx rules: a plain struct that mirrors (some of) the fields of a
//! model type.
//!
//! Use it through `wasmtx-guest`, which re-exports it (`wasmtx_guest::Model`, default feature
//! `derive`); the generated code names `::wasmtx_guest`. The derive implements
//! `wasmtx_guest::typed::TypedModel`; see that trait and `wasmtx_guest::typed` for what the
//! struct can hold and how loading and saving work.
//!
//! ```ignore
//! use std::collections::BTreeMap;
//! use wasmtx_guest::prelude::*;
//!
//! #[derive(Model)]
//! #[wasmtx(model_type = "GameCharacter")] // optional: checked when the model is loaded
//! struct Character {
//!     level: Counter,                  // `int`, saved as an increment
//!     health: i64,                     // `int`, saved as an assignment
//!     #[wasmtx(rename = "inventory")]  // the schema's name for this field
//!     items: Vec<String>,              // `list<str>`
//!     skills: BTreeMap<String, i64>,   // `dict<int>`
//!     #[wasmtx(skip)]                  // not a model field: `Default::default()` on load
//!     scratch: Vec<String>,
//! }
//! ```
//!
//! Attributes:
//! - on the struct: `#[wasmtx(model_type = "Name")]` declares the model type the struct is
//!   for (loading a model of another type fails; `Context::load_key` opens this type), and
//!   `#[wasmtx(crate = "path")]` names the `wasmtx-guest` crate when it is not a direct
//!   dependency called `wasmtx_guest`;
//! - on a field: `#[wasmtx(rename = "name")]` gives the schema field's name when it differs
//!   from the Rust field's, and `#[wasmtx(skip)]` leaves a field out of the model (it must
//!   implement `Default`).

#![deny(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Path, Type, parse_macro_input};

/// Derives `wasmtx_guest::typed::TypedModel` for a struct with named fields.
///
/// See the crate documentation for the attributes, and `wasmtx_guest::typed` for the field
/// types a struct may use (`i64`, `f64`, `bool`, `String`, `Vec<u8>`, `Counter`, `Vec<T>` and
/// `BTreeMap<String, T>` of a scalar `T`, or any type implementing `ModelField`).
#[proc_macro_derive(Model, attributes(wasmtx))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// What the struct-level attributes say.
struct ContainerAttrs {
    model_type: Option<LitStr>,
    krate: Path,
}

/// One struct field.
struct FieldInfo {
    ident: Ident,
    ty: Type,
    /// The schema field name; `None` for a skipped field.
    name: Option<LitStr>,
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let attrs = container_attrs(input)?;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "#[derive(Model)] does not support generic structs: a model struct names concrete field types",
        ));
    }
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[derive(Model)] works on a struct with named fields (one per model field), not an enum or union",
        ));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(syn::Error::new(
            data.fields.span(),
            "#[derive(Model)] needs named fields: each one maps to the model field of the same name",
        ));
    };
    let fields = named.named.iter().map(field_info).collect::<syn::Result<Vec<_>>>()?;
    check_unique_names(&fields)?;

    let krate = &attrs.krate;
    let typed = quote!(#krate::typed);
    let name = &input.ident;
    let struct_name = LitStr::new(&name.to_string(), name.span());
    let model_type = match &attrs.model_type {
        Some(lit) => quote!(::core::option::Option::Some(#lit)),
        None => quote!(::core::option::Option::None),
    };

    let tracked: Vec<&FieldInfo> = fields.iter().filter(|f| f.name.is_some()).collect();
    let specs = tracked.iter().map(|f| {
        let FieldInfo { ident, ty, name } = f;
        let rust_field = LitStr::new(&ident.to_string(), ident.span());
        let rust_type = LitStr::new(&type_name(ty), ty.span());
        quote_spanned! {ty.span()=>
            #typed::FieldSpec {
                name: #name,
                rust_field: #rust_field,
                rust_type: #rust_type,
                field_type: <#ty as #typed::ModelField>::FIELD_TYPE,
            }
        }
    });
    let mut index = 0usize;
    let reads = fields.iter().map(|f| {
        let ident = &f.ident;
        let ty = &f.ty;
        if f.name.is_some() {
            let i = index;
            index += 1;
            quote_spanned! {ty.span()=> #ident: reader.read::<#ty>(#i)? }
        } else {
            quote_spanned! {ty.span()=> #ident: ::core::default::Default::default() }
        }
    });
    let snapshots = fields.iter().map(|f| {
        let ident = &f.ident;
        if f.name.is_some() {
            quote!(#ident: ::core::clone::Clone::clone(&self.#ident))
        } else {
            quote!(#ident: ::core::default::Default::default())
        }
    });
    let writes = tracked.iter().enumerate().map(|(i, f)| {
        let ident = &f.ident;
        let ty = &f.ty;
        quote_spanned! {ty.span()=>
            <#ty as #typed::ModelField>::writes(&original.#ident, &current.#ident, &mut |write| out.push((#i, write)));
        }
    });

    Ok(quote! {
        #[automatically_derived]
        impl #typed::TypedModel for #name {
            const STRUCT_NAME: &'static str = #struct_name;
            const MODEL_TYPE: ::core::option::Option<&'static str> = #model_type;
            const FIELDS: &'static [#typed::FieldSpec] = &[#(#specs),*];

            fn read_fields(
                reader: &#typed::FieldReader<'_>,
            ) -> ::core::result::Result<Self, #typed::ModelError> {
                ::core::result::Result::Ok(Self { #(#reads),* })
            }

            fn snapshot(&self) -> Self {
                Self { #(#snapshots),* }
            }

            fn writes(
                original: &Self,
                current: &Self,
                out: &mut ::std::vec::Vec<(usize, #typed::FieldWrite)>,
            ) {
                #(#writes)*
            }
        }
    })
}

fn container_attrs(input: &DeriveInput) -> syn::Result<ContainerAttrs> {
    let mut model_type = None;
    let mut krate = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("wasmtx")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("model_type") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().is_empty() {
                    return Err(meta.error("`model_type` cannot be empty"));
                }
                model_type = Some(lit);
                Ok(())
            } else if meta.path.is_ident("crate") {
                let lit: LitStr = meta.value()?.parse()?;
                krate = Some(lit.parse::<Path>()?);
                Ok(())
            } else if meta.path.is_ident("rename") || meta.path.is_ident("skip") {
                Err(meta.error("`rename` and `skip` go on a field, not on the struct"))
            } else {
                Err(meta
                    .error("unknown wasmtx attribute: the struct takes `model_type = \"...\"` and `crate = \"...\"`"))
            }
        })?;
    }
    Ok(ContainerAttrs { model_type, krate: krate.unwrap_or_else(|| syn::parse_quote!(::wasmtx_guest)) })
}

fn field_info(field: &syn::Field) -> syn::Result<FieldInfo> {
    let Some(ident) = field.ident.clone() else {
        return Err(syn::Error::new(field.span(), "#[derive(Model)] needs named fields"));
    };
    let mut rename: Option<LitStr> = None;
    let mut skip = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("wasmtx")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                let lit: LitStr = meta.value()?.parse()?;
                if lit.value().is_empty() {
                    return Err(meta.error("`rename` cannot be empty"));
                }
                rename = Some(lit);
                Ok(())
            } else if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else if meta.path.is_ident("model_type") || meta.path.is_ident("crate") {
                Err(meta.error("`model_type` and `crate` go on the struct, not on a field"))
            } else {
                Err(meta.error("unknown wasmtx attribute: a field takes `rename = \"...\"` or `skip`"))
            }
        })?;
    }
    if skip && rename.is_some() {
        return Err(syn::Error::new(field.span(), "a field cannot be both `skip` and `rename`d"));
    }
    let name = if skip {
        None
    } else {
        // `r#type` is the model field `type`.
        let plain = ident.to_string();
        let plain = plain.strip_prefix("r#").unwrap_or(&plain);
        Some(rename.unwrap_or_else(|| LitStr::new(plain, ident.span())))
    };
    Ok(FieldInfo { ident, ty: field.ty.clone(), name })
}

fn check_unique_names(fields: &[FieldInfo]) -> syn::Result<()> {
    for (i, f) in fields.iter().enumerate() {
        let Some(name) = &f.name else { continue };
        if let Some(earlier) = fields[..i].iter().find(|e| e.name.as_ref().is_some_and(|n| n.value() == name.value())) {
            return Err(syn::Error::new(
                name.span(),
                format!("model field `{}` is already mapped by struct field `{}`", name.value(), earlier.ident),
            ));
        }
    }
    Ok(())
}

/// The type as written, without the spaces token printing adds (`Vec<String>`).
fn type_name(ty: &Type) -> String {
    let text = quote!(#ty).to_string();
    text.replace(" < ", "<")
        .replace("< ", "<")
        .replace(" <", "<")
        .replace(" >", ">")
        .replace(" , ", ", ")
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace("& ", "&")
}
