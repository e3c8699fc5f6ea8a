//! The DCAT-AP_IT catalogue of the publication, as Turtle and JSON-LD, built as RDF with `oxrdf`
//! and written by `oxttl` and `oxjsonld`. One `dcat:Dataset` per dataset, with a distribution
//! per month and format (the current version's file); every node typed as its `dcatapit:` and
//! its `dcat:` (or `foaf:`, `dct:`) class, the vocabulary nodes typed too, as the EU SHACL shapes
//! check the class of what a property points to.

use super::files::{Manifest, Publisher, month_in_italian};
use oxrdf::vocab::{rdf, xsd};
use oxrdf::{Graph, Literal, NamedNode, NamedOrBlankNode, Term, Triple};
use sportello_projections::opendata::Dataset;

const DCAT: &str = "http://www.w3.org/ns/dcat#";
const DCATAPIT: &str = "http://dati.gov.it/onto/dcatapit#";
const DCT: &str = "http://purl.org/dc/terms/";
const FOAF: &str = "http://xmlns.com/foaf/0.1/";
const VCARD: &str = "http://www.w3.org/2006/vcard/ns#";
const SKOS: &str = "http://www.w3.org/2004/02/skos/core#";
const EU: &str = "http://publications.europa.eu/resource/authority/";

/// The prefixes written in both files.
pub const PREFIXES: [(&str, &str); 7] = [
    ("dcat", DCAT),
    ("dcatapit", DCATAPIT),
    ("dct", DCT),
    ("foaf", FOAF),
    ("vcard", VCARD),
    ("skos", SKOS),
    ("xsd", "http://www.w3.org/2001/XMLSchema#"),
];

fn iri(base: &str, local: &str) -> NamedNode {
    NamedNode::new(format!("{base}{local}")).expect("a valid IRI")
}

/// What the catalogue describes and where its files are served from.
pub struct CatalogInput<'a> {
    /// Where `data/opendata/` is served, ending in `/` (e.g. `https://urp.example/opendata/`).
    pub base: &'a str,
    pub publisher: &'a Publisher,
    pub union_name: &'a str,
    /// The current version of every dataset and month.
    pub current: &'a [(Manifest, String)],
    /// An address for questions about the data, when configured.
    pub contact_email: Option<&'a str>,
}

struct Builder {
    graph: Graph,
}

impl Builder {
    fn add(&mut self, s: &NamedNode, p: NamedNode, o: impl Into<Term>) {
        self.graph.insert(&Triple::new(
            NamedOrBlankNode::NamedNode(s.clone()),
            p,
            o.into(),
        ));
    }

    fn types(&mut self, s: &NamedNode, classes: &[(&str, &str)]) {
        for (ns, local) in classes {
            self.add(s, rdf::TYPE.into_owned(), iri(ns, local));
        }
    }

    fn text(&mut self, s: &NamedNode, p: NamedNode, text: &str) {
        self.add(
            s,
            p,
            Literal::new_language_tagged_literal_unchecked(text, "it"),
        );
    }

    fn date(&mut self, s: &NamedNode, p: NamedNode, date: &str) {
        self.add(s, p, Literal::new_typed_literal(date, xsd::DATE));
    }

    /// A concept of an EU vocabulary, typed and labelled as the shapes expect.
    fn concept(
        &mut self,
        vocabulary: &str,
        code: &str,
        extra_class: (&str, &str),
        label: &str,
    ) -> NamedNode {
        let node = iri(EU, &format!("{vocabulary}/{code}"));
        self.labelled_concept(&node, extra_class, label);
        node
    }

    fn labelled_concept(&mut self, node: &NamedNode, extra_class: (&str, &str), label: &str) {
        self.types(node, &[(SKOS, "Concept"), extra_class]);
        self.text(node, iri(SKOS, "prefLabel"), label);
    }
}

/// The date part of an RFC 3339 instant.
fn day(instant: &str) -> &str {
    instant.get(..10).unwrap_or(instant)
}

pub fn graph(input: &CatalogInput) -> Graph {
    let mut b = Builder {
        graph: Graph::new(),
    };
    let base = input.base;
    let catalog = iri(base, "catalog");
    let agent = iri(base, &format!("agente/{}", input.publisher.ipa));
    b.types(&agent, &[(DCATAPIT, "Agent"), (FOAF, "Agent")]);
    b.add(
        &agent,
        iri(DCT, "identifier"),
        Literal::new_simple_literal(&input.publisher.ipa),
    );
    b.text(&agent, iri(FOAF, "name"), &input.publisher.name);

    let licence = iri(EU, "licence/CC_BY_4_0");
    b.types(
        &licence,
        &[(DCT, "LicenseDocument"), (DCATAPIT, "LicenseDocument")],
    );
    let attribution = NamedNode::new_unchecked("http://purl.org/adms/licencetype/Attribution");
    b.labelled_concept(&attribution, (SKOS, "Concept"), "Attribuzione");
    b.add(&licence, iri(DCT, "type"), attribution);
    b.text(
        &licence,
        iri(FOAF, "name"),
        "Creative Commons Attribuzione 4.0 Internazionale (CC BY 4.0)",
    );
    let italian = b.concept("language", "ITA", (DCT, "LinguisticSystem"), "Italiano");
    let monthly = b.concept("frequency", "MONTHLY", (DCT, "Frequency"), "Mensile");
    let theme = b.concept(
        "data-theme",
        "GOVE",
        (SKOS, "Concept"),
        "Governo e settore pubblico",
    );
    let formats = [("csv", "CSV"), ("json", "JSON")].map(|(ext, name)| {
        let node = b.concept("file-type", name, (DCT, "MediaTypeOrExtent"), name);
        (ext, node, name)
    });

    let contact = iri(base, "contatto");
    b.types(
        &contact,
        &[
            (DCATAPIT, "Organization"),
            (VCARD, "Organization"),
            (VCARD, "Kind"),
        ],
    );
    b.add(
        &contact,
        iri(VCARD, "fn"),
        Literal::new_simple_literal(format!("URP — {}", input.union_name)),
    );
    if let Some(email) = input.contact_email {
        b.add(
            &contact,
            iri(VCARD, "hasEmail"),
            NamedNode::new_unchecked(format!("mailto:{email}")),
        );
    }
    let home = NamedNode::new_unchecked(base);
    b.types(&home, &[(FOAF, "Document")]);
    b.add(&contact, iri(VCARD, "hasURL"), home.clone());

    b.types(&catalog, &[(DCATAPIT, "Catalog"), (DCAT, "Catalog")]);
    b.text(
        &catalog,
        iri(DCT, "title"),
        &format!("Dati aperti degli URP — {}", input.union_name),
    );
    b.text(
        &catalog,
        iri(DCT, "description"),
        "Dati aperti degli Uffici Relazioni con il Pubblico: contatti, soddisfazione degli \
         utenti, tempi di risposta, procedimenti e moduli; mensili, con licenza CC BY 4.0.",
    );
    b.add(&catalog, iri(DCT, "publisher"), agent.clone());
    b.add(&catalog, iri(FOAF, "homepage"), home);
    b.add(&catalog, iri(DCT, "language"), italian.clone());
    b.add(&catalog, iri(DCT, "license"), licence.clone());
    let catalog_modified = input
        .current
        .iter()
        .map(|(m, _)| day(&m.modified))
        .max()
        .unwrap_or("1970-01-01");
    b.date(&catalog, iri(DCT, "modified"), catalog_modified);

    for dataset in Dataset::ALL {
        let versions: Vec<&(Manifest, String)> = input
            .current
            .iter()
            .filter(|(m, _)| m.dataset == dataset.name())
            .collect();
        let Some(modified) = versions.iter().map(|(m, _)| day(&m.modified)).max() else {
            continue;
        };
        let node = iri(base, &format!("dataset/{}", dataset.name()));
        b.add(&catalog, iri(DCAT, "dataset"), node.clone());
        b.types(&node, &[(DCATAPIT, "Dataset"), (DCAT, "Dataset")]);
        b.add(
            &node,
            iri(DCT, "identifier"),
            Literal::new_simple_literal(format!("{}:{}", input.publisher.ipa, dataset.name())),
        );
        b.text(&node, iri(DCT, "title"), dataset.title());
        b.text(&node, iri(DCT, "description"), dataset.description());
        b.date(&node, iri(DCT, "modified"), modified);
        b.add(&node, iri(DCAT, "theme"), theme.clone());
        b.add(&node, iri(DCT, "rightsHolder"), agent.clone());
        b.add(&node, iri(DCT, "publisher"), agent.clone());
        b.add(&node, iri(DCT, "accrualPeriodicity"), monthly.clone());
        b.add(&node, iri(DCT, "language"), italian.clone());
        b.add(&node, iri(DCAT, "contactPoint"), contact.clone());
        b.text(&node, iri(DCAT, "keyword"), "URP");
        for (manifest, folder) in versions {
            let period = sportello_projections::opendata::Month::parse(&manifest.period);
            let label = period.map_or(manifest.period.clone(), month_in_italian);
            for (ext, format, name) in &formats {
                let file = format!("{}-{}.{ext}", manifest.dataset, manifest.period);
                let url = NamedNode::new_unchecked(format!("{base}{folder}/{file}"));
                let dist = iri(
                    base,
                    &format!(
                        "distribuzione/{}/{}/{ext}",
                        manifest.dataset, manifest.period
                    ),
                );
                b.add(&node, iri(DCAT, "distribution"), dist.clone());
                b.types(&dist, &[(DCATAPIT, "Distribution"), (DCAT, "Distribution")]);
                b.text(
                    &dist,
                    iri(DCT, "title"),
                    &format!(
                        "{} — {label} ({name}, versione {})",
                        dataset.title(),
                        manifest.version
                    ),
                );
                b.add(&dist, iri(DCAT, "accessURL"), url.clone());
                b.add(&dist, iri(DCAT, "downloadURL"), url);
                b.add(&dist, iri(DCT, "format"), format.clone());
                b.add(&dist, iri(DCT, "license"), licence.clone());
                b.date(&dist, iri(DCT, "modified"), day(&manifest.modified));
            }
        }
    }
    b.graph
}

/// The triples in a stable order, so that the same catalogue gives the same bytes.
fn sorted(graph: &Graph) -> Vec<Triple> {
    let mut triples: Vec<Triple> = graph.iter().map(|t| t.into_owned()).collect();
    triples.sort_by_key(|t| t.to_string());
    triples
}

pub fn turtle(graph: &Graph) -> anyhow::Result<Vec<u8>> {
    let mut serializer = oxttl::TurtleSerializer::new();
    for (prefix, ns) in PREFIXES {
        serializer = serializer.with_prefix(prefix, ns)?;
    }
    let mut writer = serializer.for_writer(Vec::new());
    for triple in sorted(graph) {
        writer.serialize_triple(&triple)?;
    }
    Ok(writer.finish()?)
}

pub fn json_ld(graph: &Graph) -> anyhow::Result<Vec<u8>> {
    let mut serializer = oxjsonld::JsonLdSerializer::new();
    for (prefix, ns) in PREFIXES {
        serializer = serializer.with_prefix(prefix, ns)?;
    }
    let mut writer = serializer.for_writer(Vec::new());
    for triple in sorted(graph) {
        writer.serialize_quad(&triple.in_graph(oxrdf::GraphName::DefaultGraph))?;
    }
    Ok(writer.finish()?)
}
