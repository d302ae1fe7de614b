//! Reviews (authorization.k8s.io, authentication.k8s.io): answered by `api::auth::review`,
//! never stored; create is their only verb.

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenReview};
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
};

use super::{Storage, Strategy};
use crate::api::resources::Resource;

/// A review kind's strategy: the type is all it needs (for discovery and OpenAPI).
pub struct Review<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Strategy for Review<T>
where
    T: serde::Serialize
        + serde::de::DeserializeOwned
        + schemars::JsonSchema
        + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
        + 'static,
{
    type Object = T;

    fn storage(&self) -> Storage {
        Storage::Review
    }
}

macro_rules! review {
    ($name:ident, $group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, $ns:expr, $ty:ty) => {
        pub static $name: Resource = Resource {
            group: $group,
            version: $version,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $ns,
            short_names: &[],
            categories: &[],
            subresources: &[],
            has_generation: false,
            strategy: &Review::<$ty>(std::marker::PhantomData),
        };
    };
}

const AUTHZ: &str = "authorization.k8s.io";
const AUTHN: &str = "authentication.k8s.io";

review!(
    SELF_SUBJECT_ACCESS_REVIEWS,
    AUTHZ,
    "v1",
    "selfsubjectaccessreviews",
    "selfsubjectaccessreview",
    "SelfSubjectAccessReview",
    false,
    SelfSubjectAccessReview
);
review!(
    SELF_SUBJECT_RULES_REVIEWS,
    AUTHZ,
    "v1",
    "selfsubjectrulesreviews",
    "selfsubjectrulesreview",
    "SelfSubjectRulesReview",
    false,
    SelfSubjectRulesReview
);
review!(
    SUBJECT_ACCESS_REVIEWS,
    AUTHZ,
    "v1",
    "subjectaccessreviews",
    "subjectaccessreview",
    "SubjectAccessReview",
    false,
    SubjectAccessReview
);
review!(
    LOCAL_SUBJECT_ACCESS_REVIEWS,
    AUTHZ,
    "v1",
    "localsubjectaccessreviews",
    "localsubjectaccessreview",
    "LocalSubjectAccessReview",
    true,
    LocalSubjectAccessReview
);
review!(
    TOKEN_REVIEWS,
    AUTHN,
    "v1",
    "tokenreviews",
    "tokenreview",
    "TokenReview",
    false,
    TokenReview
);
review!(
    SELF_SUBJECT_REVIEWS,
    AUTHN,
    "v1",
    "selfsubjectreviews",
    "selfsubjectreview",
    "SelfSubjectReview",
    false,
    SelfSubjectReview
);
// kubectl 1.27 `auth whoami` knows only the beta (still served upstream).
review!(
    SELF_SUBJECT_REVIEWS_V1BETA1,
    AUTHN,
    "v1beta1",
    "selfsubjectreviews",
    "selfsubjectreview",
    "SelfSubjectReview",
    false,
    SelfSubjectReview
);
