// netdef view: the page's behaviour. Everything it shows comes from the JSON block
// `netdef-data`; text from the model file is only ever set as text, never as markup.
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("netdef-data").textContent);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const GRID_PIXELS = 180;  // the unit grid's longer side, in CSS pixels
  const graph = document.getElementById("graph");
  const panel = document.getElementById("panel");
  const search = document.getElementById("search");
  const results = document.getElementById("results");
  let svg = null, home = null, view = null;

  // ------------------------------------------------------------------ small helpers
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (name === "onclick") node.addEventListener("click", value);
      else node.setAttribute(name, value);
    }
    node.append(...children.filter((child) => child !== null && child !== undefined));
    return node;
  }
  function svgEl(tag, attributes) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    return node;
  }
  const shapeText = (shape) => (shape ? (shape.length ? shape.join("×") : "scalar") : "?");
  const pair = (values) => (values[0] === values[values.length - 1] ? String(values[0]) : values.join("×"));
  function amount(value) {  // 134368799 -> 134M, as `netdef info` prints it
    if (value === null || value === undefined) return "?";
    for (const [prefix, scale] of [["T", 1e12], ["G", 1e9], ["M", 1e6], ["K", 1e3]]) {
      if (value >= scale) return (value / scale).toPrecision(3).replace(/\.?0+$/, "") + prefix;
    }
    return String(value);
  }
  const layersOnNode = (node) => Object.entries(data.layers).filter(([, layer]) => layer.node === node);
  const spatial = (blob, input) => (blob.shape && blob.maps[input] ? blob.shape.slice(-blob.maps[input].length) : null);

  // ------------------------------------------------------------------ the drawing
  function mountDrawing() {
    if (!data.svg) {
      const why = Object.keys(data.layers).length ? data.drawing_problem || "no drawing"
        : "The file could not be read as a net, so there is nothing to draw. Its problems are listed on the right.";
      graph.append(el("p", { class: "empty" }, why));
      return;
    }
    const parsed = new DOMParser().parseFromString(data.svg, "image/svg+xml");
    svg = document.importNode(parsed.documentElement, true);
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    graph.append(svg);
    const box = svg.viewBox.baseVal;
    home = { x: box.x, y: box.y, w: box.width, h: box.height };
    setView(readable());
    for (const layer of Object.values(data.layers)) {
      const node = svg.getElementById(layer.node);
      if (!node || !layer.problems.length) continue;
      const error = layer.problems.some((index) => !data.problems[index].warning);
      node.classList.add(error ? "has-error" : "has-warning");
    }
    wirePanZoom();
  }

  function readable() {  // the whole drawing if it fits at one unit per pixel, else its top at that scale
    const w = graph.clientWidth, h = graph.clientHeight;
    if (!w || !h || (home.w <= w && home.h <= h)) return home;
    return { x: home.w > w ? home.x : home.x + (home.w - w) / 2,
      y: home.h > h ? home.y : home.y + (home.h - h) / 2, w, h };
  }
  function setView(next) {
    view = next;
    svg.setAttribute("viewBox", `${next.x} ${next.y} ${next.w} ${next.h}`);
  }
  function toDrawing(clientX, clientY) {
    return new DOMPoint(clientX, clientY).matrixTransform(svg.getScreenCTM().inverse());
  }
  function zoom(factor, clientX, clientY) {
    const at = toDrawing(clientX, clientY);
    setView({ x: at.x - (at.x - view.x) * factor, y: at.y - (at.y - view.y) * factor,
      w: view.w * factor, h: view.h * factor });
  }
  function zoomAtCentre(factor) {
    const box = graph.getBoundingClientRect();
    zoom(factor, box.left + box.width / 2, box.top + box.height / 2);
  }

  let drag = null, dragged = false;
  function wirePanZoom() {
    graph.addEventListener("wheel", (event) => {
      event.preventDefault();
      zoom(Math.exp(event.deltaY * 0.0015), event.clientX, event.clientY);
    }, { passive: false });
    graph.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      drag = { x: event.clientX, y: event.clientY, from: view, scale: svg.getScreenCTM().a };
      dragged = false;
    });
    window.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (!dragged && Math.hypot(dx, dy) < 4) return;
      dragged = true;
      graph.classList.add("dragging");
      setView({ ...drag.from, x: drag.from.x - dx / drag.scale, y: drag.from.y - dy / drag.scale });
    });
    window.addEventListener("pointerup", () => { drag = null; graph.classList.remove("dragging"); });
    svg.addEventListener("click", (event) => {
      if (dragged) return;
      const node = event.target.closest("g.node");
      if (node && node.id.startsWith("L")) showLayers(node.id);
      else if (node && node.id.startsWith("b")) showBlob(node.id);
    });
  }

  function focusNode(id) {  // centre a node at one drawing unit per pixel (or the whole net, if smaller)
    const node = svg && svg.getElementById(id);
    if (!node) return;
    const box = node.getBoundingClientRect();
    const a = toDrawing(box.left, box.top), b = toDrawing(box.right, box.bottom);
    const w = Math.min(Math.max(home.w, home.h), graph.clientWidth);
    const h = w * graph.clientHeight / graph.clientWidth;
    setView({ x: (a.x + b.x) / 2 - w / 2, y: (a.y + b.y) / 2 - h / 2, w, h });
  }
  function markSelected(id) {
    if (!svg) return;
    for (const node of svg.querySelectorAll("g.selected")) node.classList.remove("selected");
    const node = id && svg.getElementById(id);
    if (node) node.classList.add("selected");
  }

  // ------------------------------------------------------------------ the side panel
  function show(...sections) {
    panel.replaceChildren(...sections);
    panel.scrollTop = 0;
  }
  const layerLink = (key) => el("a", { onclick: () => select(key) }, data.layers[key].name);
  function blobLink(key) {
    const blob = data.blobs[key];
    return el("span", {}, el("a", { onclick: () => select(key) }, blob.name), " ", shapeText(blob.shape));
  }
  function list(items) {
    return items.length ? el("ul", {}, ...items.map((item) => el("li", {}, item))) : el("span", { class: "hint" }, "none");
  }
  function problemItem(index) {
    const problem = data.problems[index];
    const item = el("div", { class: "problem " + (problem.warning ? "warning" : "error") }, problem.text);
    if (problem.layer) item.append(" ", el("a", { onclick: () => select(problem.layer) }, "show"));
    return item;
  }
  function table(rows) {
    return el("table", {}, ...rows.map(([name, ...cells]) =>
      el("tr", {}, el("th", {}, name), ...cells.map((cell) => el("td", {}, cell)))));
  }

  function showSummary() {
    markSelected(null);
    const summary = data.summary;
    const sections = [el("section", {}, el("h2", {}, data.name || "(unnamed net)"),
      el("div", { class: "subtitle" }, [data.path, data.format].filter(Boolean).join(" · ")))];
    if (summary) {
      const deepest = summary.deepest;
      sections.push(el("section", {}, el("h3", {}, "Summary"), table([
        ["inputs", list(Object.entries(summary.inputs).map(([name, shape]) => `${name} ${shapeText(shape)}`))],
        ["outputs", list(summary.outputs)],
        ["parameters", amount(summary.params)],
        ["FLOPs", amount(summary.flops)],
        ["deepest field", deepest ? `${deepest.size} pixels, at ${deepest.blob}` : "none"],
        ["layers", String(Object.keys(data.layers).length)],
      ])));
    }
    const errors = data.problems.filter((problem) => !problem.warning).length;
    const heading = `Problems: ${errors} error${errors === 1 ? "" : "s"}, ` +
      `${data.problems.length - errors} warning${data.problems.length - errors === 1 ? "" : "s"}`;
    sections.push(el("section", { id: "problems" }, el("h3", {}, heading),
      ...data.problems.map((_, index) => problemItem(index))));
    sections.push(el("p", { class: "hint" },
      "Click a layer or a blob in the drawing. / searches; Esc comes back here; drag to pan, wheel to zoom, 0 fits."));
    show(...sections);
  }

  function showLayers(node) {  // a drawn node holds its layer and the in-place layers folded into it
    markSelected(node);
    show(...layersOnNode(node).map(([key, layer]) => layerSection(key, layer)));
  }

  function layerSection(key, layer) {
    const section = el("section", { "data-key": key }, el("h2", {}, layer.name),
      el("div", { class: "subtitle" }, el("span", { class: "swatch", style: `background:${layer.colour}` }),
        `${layer.type} · ${layer.family || "unknown type"}`));
    for (const index of layer.problems) section.append(problemItem(index));
    section.append(el("h3", {}, "Blobs"), table([
      ["bottoms", list(layer.bottoms.map(blobLink))],
      ["tops", list(layer.tops.map(blobLink))],
      ["parameters", amount(layer.params)],
      ["FLOPs", amount(layer.flops)],
    ]));
    if (layer.weights) section.append(el("h3", {}, "Weights"), weightTable(layer.weights));
    if (layer.parameters) section.append(el("h3", {}, "Settings"), el("pre", {}, layer.parameters));
    if (layer.lines && data.source) section.append(el("h3", {}, `Source, lines ${layer.lines[0]}–${layer.lines[1]}`), sourceLines(layer.lines));
    return section;
  }

  function weightTable(weights) {
    const format = (value) => (typeof value === "number" ? value.toPrecision(4) : String(value));
    return el("table", { class: "weights" },
      el("tr", {}, ...["blob", "shape", "mean", "std", "min", "max", "from"].map((name) => el("th", {}, name))),
      ...weights.map((blob) => el("tr", {}, el("td", {}, String(blob.blob)), el("td", {}, shapeText(blob.shape)),
        ...[blob.mean, blob.std, blob.min, blob.max].map((value) => el("td", { class: "number" }, format(value))),
        el("td", {}, blob.source))));
  }

  function sourceLines([first, last]) {
    const width = String(last).length;
    const pre = el("pre", { class: "source" });
    for (let number = first; number <= last; number++) {
      pre.append(el("span", { class: "line-number" }, String(number).padStart(width) + "  "),
        (data.source[number - 1] ?? "") + "\n");
    }
    return pre;
  }

  function showBlob(key) {
    markSelected(key);
    const blob = data.blobs[key];
    const section = el("section", { "data-key": key }, el("h2", {}, blob.name),
      el("div", { class: "subtitle" }, `blob · ${shapeText(blob.shape)}`));
    section.append(table([
      ["made by", list(blob.producers.map(layerLink))],
      ["read by", list(blob.consumers.map(layerLink))],
    ]));
    section.append(el("h3", {}, "Receptive field"));
    const inputs = Object.keys(blob.rf);
    if (!inputs.length) {
      section.append(el("p", { class: "hint" }, blob.shape === null ? "unknown: the analysis stopped before this blob"
        : "none to draw: every unit depends on the whole input (or on no image input)"));
    } else {
      section.append(el("table", {},
        el("tr", {}, ...["input", "size", "stride", "offset"].map((name) => el("th", {}, name))),
        ...inputs.map((input) => el("tr", { "data-input": input }, el("td", {}, input),
          ...["size", "stride", "offset"].map((field) => el("td", { class: "rf-" + field }, pair(blob.rf[input][field])))))));
      section.append(unitPicker(blob, inputs));
    }
    show(section);
  }

  // ------------------------------------------------------------------ units and their fields
  function unitPicker(blob, inputs) {
    const box = el("div", { class: "unit" }, el("h3", {}, "A unit's field"));
    const choose = el("select", { id: "unit-input" }, ...inputs.map((input) => el("option", { value: input }, input)));
    const row = el("input", { id: "unit-i", type: "number", min: "0", value: "0", "aria-label": "row i" });
    const column = el("input", { id: "unit-j", type: "number", min: "0", value: "0", "aria-label": "column j" });
    box.append(el("div", { class: "unit-picker" }, inputs.length > 1 ? choose : null, "i", row, "j", column));
    const grid = el("canvas", { id: "unit-grid" });
    const picture = svgEl("svg", { id: "rf-view" });
    const caption = el("div", { id: "rf-caption" });
    box.append(grid, el("div", { class: "hint" }, "Hover the grid, or type i and j."), picture, caption);
    const state = { input: inputs[0], i: 0, j: 0 };
    const redraw = (typedIn) => drawUnit(blob, state, { grid, picture, caption, row, column }, typedIn);
    const setUnit = (i, j, typedIn) => { state.i = i; state.j = j; redraw(typedIn); };
    choose.addEventListener("change", () => { state.input = choose.value; redraw(); });
    for (const field of [row, column]) {  // the field being typed in keeps its text as typed
      field.addEventListener("input", () => setUnit(Number(row.value) || 0, Number(column.value) || 0, field));
    }
    grid.addEventListener("mousemove", (event) => {
      const size = spatial(blob, state.input);
      if (!size) return;
      const scale = grid.clientWidth / size[size.length - 1];
      const i = Math.min(size[0] - 1, Math.max(0, Math.floor(event.offsetY / scale)));
      const j = Math.min(size[size.length - 1] - 1, Math.max(0, Math.floor(event.offsetX / scale)));
      if (i !== state.i || j !== state.j) setUnit(i, j);
    });
    requestAnimationFrame(redraw);
    redraw();
    return box;
  }

  function axisField(map, unit) {  // [from, to) in input pixels, or null: this phase reads no input
    const period = map.support.length;
    const support = map.support[((unit % period) + period) % period];
    if (!support) return null;
    const centre = map.offset + unit * map.stride;
    return { centre, from: centre + support[0], to: centre + support[1] + 1 };
  }

  function inputSize(input) {  // [height, width] of an image input
    const shape = data.summary && data.summary.inputs[input];
    if (shape && shape.length >= 2) return shape.slice(-2);
    if (data.image && data.image.input === input) return [data.image.height, data.image.width];
    return null;
  }

  function drawUnit(blob, state, parts, typedIn) {
    const maps = blob.maps[state.input];
    const size = spatial(blob, state.input);
    if (size) {
      state.i = Math.min(Math.max(0, state.i), size[0] - 1);
      state.j = Math.min(Math.max(0, state.j), size[size.length - 1] - 1);
      parts.row.max = size[0] - 1;
      parts.column.max = size[size.length - 1] - 1;
    }
    if (typedIn !== parts.row) parts.row.value = state.i;
    if (typedIn !== parts.column) parts.column.value = state.j;
    drawGrid(parts.grid, size, state);
    const unit = maps.length === 1 ? [state.j] : [state.i, state.j];
    const fields = maps.map((map, axis) => axisField(map, unit[axis]));
    const imageSize = inputSize(state.input);
    parts.picture.replaceChildren();
    if (!imageSize) {
      parts.caption.textContent = `The size of input '${state.input}' is unknown; give it with --input.`;
      return;
    }
    drawField(parts.picture, imageSize, state.input, fields);
    parts.caption.textContent = describe(blob, state, fields, imageSize);
  }

  function drawGrid(canvas, size, state) {
    if (!size) { canvas.hidden = true; return; }
    canvas.hidden = false;
    const [rows, columns] = size.length === 1 ? [1, size[0]] : [size[0], size[size.length - 1]];
    const scale = Math.min(24, GRID_PIXELS / Math.max(rows, columns));
    const width = Math.max(1, Math.round(columns * scale)), height = Math.max(1, Math.round(rows * scale));
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    const ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    const pen = canvas.getContext("2d");
    pen.scale(ratio, ratio);
    pen.fillStyle = "#f6f8fa";
    pen.fillRect(0, 0, width, height);
    if (scale >= 5) {
      pen.strokeStyle = "#d0d7de";
      pen.beginPath();
      for (let r = 0; r <= rows; r++) { pen.moveTo(0, r * scale); pen.lineTo(width, r * scale); }
      for (let c = 0; c <= columns; c++) { pen.moveTo(c * scale, 0); pen.lineTo(c * scale, height); }
      pen.stroke();
    }
    const cell = Math.max(scale, 2), x = state.j * scale, y = (size.length === 1 ? 0 : state.i) * scale;
    pen.fillStyle = "rgba(9, 105, 218, 0.15)";  // the unit's row and column, to find it on a fine grid
    pen.fillRect(0, y, width, cell);
    pen.fillRect(x, 0, cell, height);
    pen.fillStyle = "#0969da";
    pen.fillRect(x, y, cell, cell);
  }

  function drawField(picture, [height, width], input, fields) {
    picture.setAttribute("viewBox", `0 0 ${width} ${height}`);
    if (data.image && data.image.input === input) {
      picture.append(svgEl("image", { href: data.image.href, x: 0, y: 0, width, height, preserveAspectRatio: "none" }));
    } else {
      const square = Math.max(8, Math.round(Math.max(width, height) / 25));
      const pattern = svgEl("pattern", { id: "checkers", width: 2 * square, height: 2 * square, patternUnits: "userSpaceOnUse" });
      pattern.append(svgEl("rect", { width: 2 * square, height: 2 * square, fill: "#eeeeee" }),
        svgEl("rect", { width: square, height: square, fill: "#cccccc" }),
        svgEl("rect", { x: square, y: square, width: square, height: square, fill: "#cccccc" }));
      const defs = svgEl("defs");
      defs.append(pattern);
      picture.append(defs, svgEl("rect", { width, height, fill: "url(#checkers)" }));
    }
    const [down, across] = fields.length === 1 ? [{ centre: height / 2 - 0.5, from: 0, to: height }, fields[0]] : fields;
    if (!down || !across) return;
    const clip = (field, limit) => [Math.max(0, field.from), Math.min(limit, field.to)];
    const [top, bottom] = clip(down, height), [left, right] = clip(across, width);
    picture.append(svgEl("rect", { id: "rf-rect", x: left, y: top,
      width: Math.max(0, right - left), height: Math.max(0, bottom - top) }));
    const cx = across.centre + 0.5, cy = down.centre + 0.5, arm = Math.max(width, height) / 60;
    const cross = svgEl("path", { id: "rf-centre", d: `M${cx - arm} ${cy}H${cx + arm}M${cx} ${cy - arm}V${cy + arm}` });
    picture.append(cross);
  }

  function describe(blob, state, fields, [height, width]) {
    const at = fields.length === 1 ? `unit ${state.j}` : `unit (${state.i}, ${state.j})`;
    if (fields.some((field) => field === null)) return `${at} of ${blob.name}: this phase reads no pixel of ${state.input}.`;
    const across = fields[fields.length - 1], down = fields.length === 1 ? null : fields[0];
    const span = (field) => `${field.from}…${field.to - 1}`;
    const outside = (field, limit) => field.to <= 0 || field.from >= limit;
    let text = `${at} of ${blob.name}: centre ` + (down ? `(${down.centre}, ${across.centre})` : `${across.centre}`) +
      `; field ` + (down ? `rows ${span(down)}, ` : "") + `columns ${span(across)}` +
      ` (${down ? `${down.to - down.from}×` : ""}${across.to - across.from} pixels)`;
    if ((down && outside(down, height)) || outside(across, width)) text += "; it lies outside the image: it sees only padding.";
    else if ((down && (down.from < 0 || down.to > height)) || across.from < 0 || across.to > width) text += ", clipped to the image.";
    else text += ".";
    return text;
  }

  // ------------------------------------------------------------------ search
  const index = [
    ...Object.entries(data.layers).map(([key, layer]) => ({ key, name: layer.name, kind: layer.type })),
    ...Object.entries(data.blobs).map(([key, blob]) => ({ key, name: blob.name, kind: "blob " + shapeText(blob.shape) })),
  ];
  let matches = [], active = 0;
  function find(query) {
    const wanted = query.trim().toLowerCase();
    if (!wanted) return [];
    const rank = (entry) => {
      const name = entry.name.toLowerCase();
      return name === wanted ? 0 : name.startsWith(wanted) ? 1 : name.includes(wanted) ? 2 : entry.kind.toLowerCase().includes(wanted) ? 3 : 9;
    };
    return index.map((entry) => [rank(entry), entry]).filter(([score]) => score < 9)
      .sort((a, b) => a[0] - b[0]).slice(0, 30).map(([, entry]) => entry);
  }
  function listMatches() {
    matches = find(search.value);
    active = 0;
    results.replaceChildren(...matches.map((entry, position) => {
      const item = el("li", { role: "option", "data-key": entry.key }, el("span", {}, entry.name), el("span", { class: "kind" }, entry.kind));
      item.addEventListener("mousedown", (event) => { event.preventDefault(); pick(position); });
      return item;
    }));
    if (!matches.length && search.value.trim()) results.append(el("li", { class: "none" }, "no layer or blob of that name"));
    results.hidden = !search.value.trim();
    highlight();
  }
  function highlight() {
    [...results.children].forEach((item, position) => item.classList.toggle("active", position === active));
  }
  function pick(position) {
    const entry = matches[position];
    if (!entry) return;
    results.hidden = true;
    search.blur();
    select(entry.key);
  }
  search.addEventListener("input", listMatches);
  search.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      active = Math.max(0, Math.min(matches.length - 1, active + (event.key === "ArrowDown" ? 1 : -1)));
      highlight();
    } else if (event.key === "Enter") {
      pick(active);
    }
  });
  search.addEventListener("blur", () => { results.hidden = true; });
  search.addEventListener("focus", () => { if (search.value.trim()) listMatches(); });

  // ------------------------------------------------------------------ selection and keys
  function select(key) {
    if (key.startsWith("L")) {
      const node = data.layers[key].node;
      showLayers(node);
      focusNode(node);
      const section = panel.querySelector(`section[data-key="${key}"]`);
      if (section) section.scrollIntoView();
    } else {
      showBlob(key);
      focusNode(key);
    }
  }
  document.addEventListener("keydown", (event) => {
    const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement;
    if (event.key === "Escape") {
      if (!results.hidden || document.activeElement === search) { results.hidden = true; search.blur(); }
      else showSummary();
    } else if (typing || event.ctrlKey || event.metaKey || event.altKey) {
      return;
    } else if (event.key === "/") {
      event.preventDefault();
      search.focus();
      search.select();
    } else if (svg && event.key === "0") {
      setView(home);
    } else if (svg && (event.key === "+" || event.key === "=")) {
      zoomAtCentre(1 / 1.25);
    } else if (svg && event.key === "-") {
      zoomAtCentre(1.25);
    }
  });
  document.getElementById("summary-button").addEventListener("click", showSummary);
  document.getElementById("fit-button").addEventListener("click", () => { if (svg) setView(home); });

  document.getElementById("net-name").textContent = [data.name, data.path].filter(Boolean).join(" — ");
  mountDrawing();
  showSummary();
})();
