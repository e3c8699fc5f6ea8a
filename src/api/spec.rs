//! The OpenAPI document: what utoipa derives from the handlers and types, completed with what
//! the server does for every operation of a kind, so that the document says exactly what the
//! server answers (checked by schemathesis in the test suite):
//! - every error answer is a problem document, `application/problem+json`;
//! - the statuses that the shared layers give: 400 (broken JSON), 413 and 415 for a body, 422
//!   for a parameter or body that does not fit, 404 for a path naming nothing, 401 and 403 for
//!   staff operations, 429 for the rate-limited public writes, 503 for a database that is away
//!   for a moment (or a projection not yet at `min_position`);
//! - the comuni of this installation as the only values of the fields that name one;
//! - the cross-field rules of a rating (the score's range by scale, the reasons by score).

use super::{ops, public, staff};
use serde_json::{Map, Value, json};
use sportello_config::Settings;
use sportello_engine::domain::case::{CaseKind, Channel, Outcome};
use sportello_engine::domain::feedback::{Scale, TargetType, reasons_for};
use sportello_projections::name_of;
use utoipa::OpenApi;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`sportello token create --role … --comune … --name …`",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sportello",
        description = "API degli Uffici Relazioni con il Pubblico: richieste dei cittadini, moduli, valutazioni; lavoro degli operatori e statistiche. Errori in formato RFC 9457 (application/problem+json) con codice stabile e messaggio in italiano.",
        license(name = "EUPL-1.2")
    ),
    paths(
        public::open_case, public::follow_case, public::send_documents, public::withdraw,
        public::services, public::service, public::form, public::submit, public::feedback,
        staff::me, staff::inbox, staff::case_detail, staff::case_document, staff::open_case, staff::act,
        staff::satisfaction, staff::service_levels, staff::erase_subject,
        ops::healthz, ops::readyz, ops::openapi, super::metrics::metrics,
    ),
    components(schemas(super::problem::Problem, super::problem::FieldProblem)),
    modifiers(&BearerAuth),
    tags(
        (name = "pubblico", description = "Per i cittadini, senza autenticazione"),
        (name = "staff", description = "Per il personale URP, con token"),
        (name = "operazioni", description = "Stato del servizio"),
    )
)]
struct ApiDoc;

const PROBLEM: &str = "application/problem+json";

/// The document for this installation.
pub fn document(settings: &Settings) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises");
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                if let Some(operation) = operation.as_object_mut() {
                    complete_responses(path, method, operation);
                }
            }
        }
    }
    public_case_request(&mut doc);
    one_operation_per_action(&mut doc);
    // The erasure's reason may be left out, and with it the body.
    if let Some(body) =
        doc.pointer_mut("/paths/~1api~1v1~1staff~1subjects~1{subject_id}~1erase/post/requestBody")
    {
        body["required"] = json!(false);
    }
    let comuni: Vec<Value> = settings
        .comuni
        .iter()
        .map(|c| Value::String(c.istat.to_string()))
        .collect();
    for (schema, property) in [
        ("NewCaseRequest", "comune"),
        ("PublicCaseRequest", "comune"),
        ("SubmissionRequest", "comune"),
        ("FeedbackRequest", "comune"),
        ("ActionRequest", "to_comune"),
    ] {
        if let Some(p) = property_mut(&mut doc, schema, property) {
            p.insert("enum".into(), Value::Array(comuni.clone()));
        }
    }
    if let Some(feedback) = schema_mut(&mut doc, "FeedbackRequest") {
        feedback.insert("allOf".into(), Value::Array(rating_rules()));
    }
    doc
}

/// The public intake takes a contact as `NewCaseRequest` without `received_at` (the system
/// records when it arrived) and only by the public channels.
fn public_case_request(doc: &mut Value) {
    let Some(mut public) = doc.pointer("/components/schemas/NewCaseRequest").cloned() else {
        return;
    };
    if let Some(properties) = public["properties"].as_object_mut() {
        properties.remove("received_at");
        properties.insert(
            "channel".into(),
            serde_json::to_value(public_channels()).expect("a schema serialises"),
        );
    }
    doc["components"]["schemas"]["PublicCaseRequest"] = public;
    if let Some(schema) =
        doc.pointer_mut("/paths/~1api~1v1~1cases/post/requestBody/content/application~1json/schema")
    {
        *schema = json!({ "$ref": "#/components/schemas/PublicCaseRequest" });
    }
}

/// `POST /api/v1/staff/cases/{id}/{action}` as one operation per action, each saying which
/// fields of `ActionRequest` it needs ([`staff::ACTIONS`]).
fn one_operation_per_action(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    let Some(generic) = paths.remove("/api/v1/staff/cases/{id}/{action}") else {
        return;
    };
    for (action, required) in staff::ACTIONS {
        let mut item = generic.clone();
        let operation = &mut item["post"];
        if let Some(parameters) = operation["parameters"].as_array_mut() {
            parameters.retain(|p| p["name"] != "action");
        }
        operation["operationId"] = json!(format!("act_{}", action.replace('-', "_")));
        operation["summary"] = json!(format!("Azione `{action}` sulla pratica"));
        operation["requestBody"] = json!({
            "required": !required.is_empty(),
            "content": { "application/json": { "schema": {
                "allOf": [{ "$ref": "#/components/schemas/ActionRequest" }],
                "required": required,
            } } }
        });
        paths.insert(format!("/api/v1/staff/cases/{{id}}/{action}"), item);
    }
}

/// Adds the statuses every operation of its kind can answer, and makes every error answer a
/// problem document.
fn complete_responses(path: &str, method: &str, operation: &mut Map<String, Value>) {
    let has_body = operation.contains_key("requestBody");
    let in_path = path.contains('{');
    let has_query = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    let staff = operation.contains_key("security");
    let public_write = method == "post" && !staff;
    let mut add = vec![(
        "503",
        "Database momentaneamente non raggiungibile, o dati non ancora aggiornati a `min_position`: riprovare dopo `Retry-After` secondi (con la stessa `Idempotency-Key`)",
    )];
    if has_body {
        add.extend([
            ("400", "Corpo non leggibile o JSON non valido"),
            ("413", "Corpo oltre la dimensione massima"),
            ("415", "Corpo non JSON"),
        ]);
    }
    if has_body || has_query {
        add.push((
            "422",
            "Dati o parametri non validi, campo per campo in `errors`",
        ));
    }
    if in_path || has_body {
        add.push((
            "404",
            "Nessuna risorsa a questo indirizzo, o il corpo nomina un servizio, un modulo o una pratica che non esiste",
        ));
    }
    if staff {
        add.extend([
            ("401", "Token mancante, sconosciuto o revocato"),
            ("403", "Il ruolo o il comune del token non lo consentono"),
        ]);
    }
    if public_write {
        add.push((
            "429",
            "Troppe richieste da questo indirizzo: riprovare dopo `Retry-After`",
        ));
    }
    if let Some(parameters) = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
    {
        for parameter in parameters.iter_mut() {
            if parameter["name"] == "Idempotency-Key" {
                parameter["schema"] =
                    json!({ "type": "string", "pattern": super::guard::IDEMPOTENCY_KEY_PATTERN });
            }
            // An unsigned parameter takes every value up to its type's largest (utoipa describes
            // u32 and u64 as int32 and int64 from 0).
            let unsigned = match parameter["schema"]["format"].as_str() {
                Some("int32") => Some(("uint32", u64::from(u32::MAX))),
                Some("int64") => Some(("uint64", u64::MAX)),
                _ => None,
            };
            if let Some((format, largest)) = unsigned
                && parameter["schema"]["minimum"] == 0
            {
                parameter["schema"]["format"] = json!(format);
                if parameter["schema"].get("maximum").is_none() {
                    parameter["schema"]["maximum"] = json!(largest);
                }
            }
            // A query string cannot say null: an optional parameter is one left out.
            if parameter["in"] == "query"
                && let Some(types) = parameter["schema"]["type"].as_array()
            {
                let types: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                parameter["schema"]["type"] = match types.as_slice() {
                    [one] => one.clone(),
                    _ => Value::Array(types),
                };
            }
        }
    }
    let responses = operation
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses is an object");
    for (status, description) in add {
        responses
            .entry(status)
            .or_insert_with(|| json!({ "description": description }));
    }
    for (status, response) in responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        // `/readyz` answers its 503 with the readiness report itself.
        let own_body = response["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .is_some_and(|r| !r.ends_with("/Problem"));
        if is_error && !own_body {
            response["content"] = json!({
                PROBLEM: { "schema": { "$ref": "#/components/schemas/Problem" } }
            });
        }
    }
}

/// A rating's rules that span fields, as JSON Schema `if`/`then`, from the domain's own tables:
/// faces score 1–3, stars 1–5; the reasons offered depend on the score.
fn rating_rules() -> Vec<Value> {
    let mut rules = vec![json!({
        "if": { "properties": { "scale": { "const": "faces" } } },
        "then": { "properties": { "score": { "maximum": 3 } } }
    })];
    for (scale, name, scores) in [
        (Scale::Faces, "faces", 1..=3u8),
        (Scale::Stars, "stars", 1..=5),
    ] {
        for score in scores {
            let allowed: Vec<&str> = reasons_for(scale, score).iter().map(|(c, _)| *c).collect();
            let reasons = if allowed.is_empty() {
                json!({ "maxItems": 0 })
            } else {
                json!({ "items": { "enum": allowed } })
            };
            rules.push(json!({
                "if": {
                    "properties": { "scale": { "const": name }, "score": { "const": score } },
                    "required": ["scale", "score"]
                },
                "then": { "properties": { "reasons": reasons } }
            }));
        }
    }
    rules
}

/// A string schema whose only values are `values`.
fn one_of_strings(values: impl IntoIterator<Item = String>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .build()
}

fn names<T: serde::Serialize>(values: &[T]) -> Vec<String> {
    values.iter().map(name_of).collect()
}

/// The kinds of contact (`informazione`…).
pub fn case_kinds() -> Object {
    one_of_strings(names(&CaseKind::ALL))
}

/// Every channel, as staff record them.
pub fn channels() -> Object {
    one_of_strings(names(&Channel::ALL))
}

/// The channels a contact may come by through the public API.
pub fn public_channels() -> Object {
    one_of_strings(names(&PUBLIC_CHANNELS))
}

pub const PUBLIC_CHANNELS: [Channel; 2] = [Channel::Web, Channel::App];

pub fn scales() -> Object {
    one_of_strings(names(&[Scale::Faces, Scale::Stars]))
}

pub fn target_types() -> Object {
    one_of_strings(names(&[
        TargetType::Service,
        TargetType::Page,
        TargetType::Case,
    ]))
}

/// The outcomes staff may close with (a withdrawal's comes from the citizen).
pub fn closing_outcomes() -> Object {
    one_of_strings(names(&[
        Outcome::Accolta,
        Outcome::Respinta,
        Outcome::NonDiCompetenza,
        Outcome::Duplicata,
    ]))
}

/// `true`, and nothing else (a consent that must be given).
pub fn must_be_true() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .build()
}

/// At least one document, each named.
pub fn document_names() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .pattern(Some(r"[^\s\u0085]")),
        )
        .min_items(Some(1))
        .build()
}

fn schema_mut<'a>(doc: &'a mut Value, name: &str) -> Option<&'a mut Map<String, Value>> {
    doc.pointer_mut(&format!("/components/schemas/{name}"))
        .and_then(Value::as_object_mut)
}

fn property_mut<'a>(
    doc: &'a mut Value,
    schema: &str,
    property: &str,
) -> Option<&'a mut Map<String, Value>> {
    doc.pointer_mut(&format!(
        "/components/schemas/{schema}/properties/{property}"
    ))
    .and_then(Value::as_object_mut)
}
