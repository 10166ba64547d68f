//! Figures as files: every `name.svg` the crate writes gets a `name.png` beside it (what people
//! paste into papers and slides), rendered at 2× by resvg (pure Rust) with one embedded font,
//! DejaVu Sans (`assets/fonts`, Bitstream Vera licence), so a machine with no fonts installed
//! still draws the labels. Every figure is written through [`write_svg`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use resvg::tiny_skia::{Color, Pixmap, Transform};
use resvg::usvg::{fontdb, Options, Tree};

/// Pixels per SVG unit in the PNG copy.
pub const PNG_SCALE: f32 = 2.0;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "DejaVu Sans";

/// Writes `svg` to `path` and its PNG copy to `path` with the extension `.png`, each atomically
/// (a failed render leaves the SVG and no PNG, not even an older one). Errors name the file.
pub fn write_svg(path: &Path, svg: &str) -> std::io::Result<()> {
    let named = |p: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    crate::io::write_atomic(path, svg.as_bytes()).map_err(|e| named(path, e))?;
    let png = png_path(path);
    match svg_to_png(svg) {
        Ok(bytes) => crate::io::write_atomic(&png, &bytes).map_err(|e| named(&png, e)),
        Err(reason) => {
            let _ = std::fs::remove_file(&png);
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: cannot render it as PNG: {reason}", path.display()),
            ))
        }
    }
}

/// Where [`write_svg`] puts the PNG copy of `svg_path`.
pub fn png_path(svg_path: &Path) -> PathBuf {
    svg_path.with_extension("png")
}

/// Renders an SVG document as PNG bytes, [`PNG_SCALE`] pixels per unit, on white.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>, String> {
    let opt = Options {
        fontdb: fonts(),
        font_family: FAMILY.into(),
        ..Options::default()
    };
    let tree = Tree::from_str(svg, &opt).map_err(|e| e.to_string())?;
    let size = tree.size();
    let (w, h) = (
        (size.width() * PNG_SCALE).ceil() as u32,
        (size.height() * PNG_SCALE).ceil() as u32,
    );
    let mut pixmap = Pixmap::new(w, h).ok_or_else(|| format!("cannot make a {w}x{h} image"))?;
    pixmap.fill(Color::WHITE);
    let scale = Transform::from_scale(PNG_SCALE, PNG_SCALE);
    resvg::render(&tree, scale, &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| e.to_string())
}

/// The embedded font, standing in for every generic family (`sans-serif`, `monospace`, ...)
/// and for any named family the machine lacks. Parsed once.
fn fonts() -> Arc<fontdb::Database> {
    static DB: OnceLock<Arc<fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = fontdb::Database::new();
        db.load_font_data(FONT.to_vec());
        db.set_serif_family(FAMILY);
        db.set_sans_serif_family(FAMILY);
        db.set_monospace_family(FAMILY);
        db.set_cursive_family(FAMILY);
        db.set_fantasy_family(FAMILY);
        Arc::new(db)
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Width and height from a PNG's IHDR chunk (after the 8-byte signature and the chunk's
    /// length and type).
    fn png_size(png: &[u8]) -> (u32, u32) {
        let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
        (be(16), be(20))
    }

    /// The PNG copy: a PNG, 2× the SVG's size, with something drawn on the white (the text
    /// alone, too: the embedded font draws it with no system fonts).
    #[test]
    fn writes_a_png_twice_the_size_beside_the_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig.svg");
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40" viewBox="0 0 120 40"><text x="4" y="28" font-size="20" font-family="sans-serif">Paris</text></svg>"#;
        write_svg(&path, svg).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), svg);
        let png = std::fs::read(dir.path().join("fig.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(png_size(&png), (240, 80));
        let pixmap = Pixmap::decode_png(&png).unwrap();
        let inked = (pixmap.pixels().iter())
            .filter(|p| p.red() < 128 && p.green() < 128 && p.blue() < 128)
            .count();
        // "Paris" at 40 px: a few hundred dark pixels, far from none and far from all 19,200.
        assert!((100..5000).contains(&inked), "{inked} dark pixels");
    }

    /// Not an SVG: the SVG is written as given, the PNG is not, and the error names the file.
    #[test]
    fn a_broken_svg_gets_no_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.svg");
        let e = write_svg(&path, "<svg").unwrap_err();
        assert!(
            e.to_string().contains("bad.svg: cannot render it as PNG"),
            "{e}"
        );
        assert!(path.is_file() && !dir.path().join("bad.png").exists());
    }
}
