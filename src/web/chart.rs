//! Bar charts drawn as SVG on the server: readable without JavaScript, styled only by attributes
//! (the Content-Security-Policy allows no inline style), and described for screen readers by a
//! title and by the data table each page prints beside them.

use std::fmt::Write;

/// One series of a chart: a name for the legend and a value per category (none: no data).
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

#[derive(Clone, Copy)]
pub enum Unit {
    /// 0..=1, drawn as 0–100 %.
    Share,
    Count,
}

/// Colours of the series: Bootstrap Italia's primary blue and its companions, each at least 3:1
/// against white (WCAG 1.4.11).
const COLOURS: [&str; 4] = ["#0066cc", "#a61919", "#006b3d", "#8a5a00"];

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 56.0;
const TOP: f64 = 16.0;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn label(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Share => format!("{:.0}%", value * 100.0),
        Unit::Count if value.fract() == 0.0 => format!("{value:.0}"),
        Unit::Count => format!("{value:.1}"),
    }
}

/// A "nice" top of the scale: 1, 2 or 5 times a power of ten, at or above `max`.
fn scale_top(max: f64, unit: Unit) -> f64 {
    if let Unit::Share = unit {
        return 1.0;
    }
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|top| *top >= max)
        .unwrap_or(10.0 * magnitude)
}

/// A grouped bar chart of `series` over `categories`, as an `<svg>` element; `id` names its
/// title for `aria-labelledby`.
pub fn bars(id: &str, title: &str, categories: &[String], series: &[Series], unit: Unit) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let top = scale_top(max, unit);
    let plot_width = WIDTH - LEFT - 8.0;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let group = plot_width / categories.len().max(1) as f64;
    let bar = (group * 0.8 / series.len().max(1) as f64).min(40.0);
    let y_of = |v: f64| TOP + plot_height * (1.0 - v / top);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="sportello-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}" xmlns="http://www.w3.org/2000/svg" font-family="Titillium Web, sans-serif" font-size="12"><title id="{id}">{}</title>"#,
        escape(title)
    );
    // Grid lines and the scale, in round steps.
    let steps = match unit {
        Unit::Count if top / 10f64.powf(top.log10().floor()) != 2.0 => 5,
        _ => 4,
    };
    for step in 0..=steps {
        let value = top * step as f64 / steps as f64;
        let y = y_of(value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#d9dadb"/><text x="{}" y="{:.1}" text-anchor="end" fill="#1a1a1a">{}</text>"##,
            WIDTH - 8.0,
            LEFT - 6.0,
            y + 4.0,
            label(value, unit)
        );
    }
    // Every category is labelled where the labels fit; past that, one in `every`.
    let widest = categories
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0) as f64;
    let every = ((widest * 6.5 + 8.0) / group).ceil().max(1.0) as usize;
    for (c, category) in categories.iter().enumerate() {
        let start = LEFT + group * c as f64 + (group - bar * series.len() as f64) / 2.0;
        for (s, one) in series.iter().enumerate() {
            let Some(value) = one.values.get(c).copied().flatten() else {
                continue;
            };
            let y = y_of(value);
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} · {}: {}</title></rect>"#,
                start + bar * s as f64,
                bar - 2.0,
                (TOP + plot_height - y).max(0.0),
                COLOURS[s % COLOURS.len()],
                escape(category),
                escape(&one.name),
                label(value, unit)
            );
        }
        if c % every == 0 {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#1a1a1a">{}</text>"##,
                LEFT + group * (c as f64 + 0.5),
                TOP + plot_height + 16.0,
                escape(category)
            );
        }
    }
    // The legend, under the categories.
    let mut x = LEFT;
    for (s, one) in series.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}" fill="#1a1a1a">{}</text>"##,
            HEIGHT - 22.0,
            COLOURS[s % COLOURS.len()],
            x + 16.0,
            HEIGHT - 12.0,
            escape(&one.name)
        );
        x += 24.0 + 7.0 * one.name.chars().count() as f64;
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_escapes_its_labels_and_draws_one_bar_per_value() {
        let svg = bars(
            "g",
            "Giudizi <positivi>",
            &["2026-01".into(), "2026-02".into()],
            &[
                Series {
                    name: "Stelle".into(),
                    values: vec![Some(0.5), None],
                },
                Series {
                    name: "Faccine & co".into(),
                    values: vec![Some(1.0), Some(0.25)],
                },
            ],
            Unit::Share,
        );
        assert!(svg.contains("<title id=\"g\">Giudizi &lt;positivi&gt;</title>"));
        assert!(svg.contains("Faccine &amp; co"));
        assert_eq!(
            svg.matches("<rect x=").count(),
            3 + 2,
            "three bars, two legend keys"
        );
        assert!(svg.contains("2026-02 · Faccine &amp; co: 25%"));
        assert!(!svg.contains("style="), "the CSP allows no inline style");
    }

    #[test]
    fn the_scale_ends_on_a_round_number() {
        assert_eq!(scale_top(0.0, Unit::Count), 1.0);
        assert_eq!(scale_top(7.0, Unit::Count), 10.0);
        assert_eq!(scale_top(13.0, Unit::Count), 20.0);
        assert_eq!(scale_top(420.0, Unit::Count), 500.0);
        assert_eq!(scale_top(0.3, Unit::Share), 1.0);
    }
}
