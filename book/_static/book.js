// Mermaid diagrams at their drawn size where the text column has room, shrunk to the
// column where it has not, but never below MIN_SCALE of that size: a wide flowchart
// shrunk to a phone's 350 px would have labels a few pixels high. A diagram wider than
// the column then scrolls sideways inside its box (book.css), like a wide table.
(() => {
  const MIN_SCALE = 0.6;
  const size = (svg) => {
    const drawn = svg.viewBox && svg.viewBox.baseVal && svg.viewBox.baseVal.width;
    if (!drawn || svg.dataset.bookSized) return;
    svg.dataset.bookSized = "true";
    svg.style.width = `${Math.ceil(drawn)}px`;
    svg.style.minWidth = `${Math.ceil(drawn * MIN_SCALE)}px`;
  };
  // Mermaid draws after the page has loaded, replacing each block's text with an SVG.
  const sizeAll = () => document.querySelectorAll("pre.mermaid > svg").forEach(size);
  new MutationObserver(sizeAll).observe(document.documentElement, { childList: true, subtree: true });
})();
