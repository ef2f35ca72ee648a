// The release page: classifies a photo with the release's model.tflite in this browser (MediaPipe Tasks
// ImageClassifier, WebAssembly on the CPU). Everything is fetched from the server that serves this page
// (`mobiledx app`); the photo is read locally and never sent anywhere.
//
// Each result is also machine-readable, for tests and benchmarks, on <section id="result">:
// data-file, data-count (results so far), data-scores (JSON, one probability per label in labels order),
// data-image-ms (decode + classify), data-classify-ms (MediaPipe's classify call) and
// data-first-result-ms (navigation start to the first result shown). <body data-state> is loading, ready,
// unsupported (a model MediaPipe cannot run here) or error; <body data-ready-ms>: navigation start to ready.

import {FilesetResolver, ImageClassifier} from "/vendor/tasks-vision/vision_bundle.mjs";

const RELEASE = "/release/";
const WASM = "/vendor/tasks-vision/wasm";
const $ = (id) => document.getElementById(id);

async function fetchOk(name) {
  const response = await fetch(RELEASE + name);
  if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
  return response;
}

const fetchJson = async (name) => (await fetchOk(name)).json();
const fetchText = async (name) => (await fetchOk(name)).text();
const optional = (promise) => promise.catch(() => null);

// ---------------------------------------------------------------- a small Markdown renderer (the model card)

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
}

// `code`, **bold** and *italic*; code spans are kept verbatim.
function inline(text) {
  return text.split(/(`[^`]*`)/).map((part) => {
    if (part.startsWith("`") && part.endsWith("`") && part.length > 1) {
      return `<code>${escapeHtml(part.slice(1, -1))}</code>`;
    }
    return escapeHtml(part)
      .replace(/\*\*(.+?)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[\s(])\*([^*\s][^*]*?)\*/g, "$1<em>$2</em>");
  }).join("");
}

const BLOCK_START = /^(#{1,6}\s|>|\s*\||\s*[-*]\s+|\s*\d+\.\s+)/;

function tableCells(line) {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((cell) => inline(cell.trim()));
}

// Headings, paragraphs, lists, tables and block quotes: what model_card.md uses. Its title becomes an <h2>
// (the page's <h1> is the model's name).
function markdownToHtml(markdown) {
  const lines = markdown.split(/\r?\n/);
  const html = [];
  const take = (test) => {
    const block = [];
    while (lines.length && test(lines[0])) block.push(lines.shift());
    return block;
  };
  while (lines.length) {
    const line = lines[0];
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (!line.trim()) {
      lines.shift();
    } else if (heading) {
      lines.shift();
      const level = Math.min(heading[1].length + 1, 6);
      html.push(`<h${level}>${inline(heading[2])}</h${level}>`);
    } else if (line.startsWith(">")) {
      const quoted = take((l) => l.startsWith(">")).map((l) => l.replace(/^>\s?/, ""));
      html.push(`<blockquote>${markdownToHtml(quoted.join("\n"))}</blockquote>`);
    } else if (/^\s*\|/.test(line)) {
      const rows = take((l) => /^\s*\|/.test(l)).filter((l) => !/^\s*\|?[\s:|-]+\|?\s*$/.test(l));
      const [head, ...body] = rows.map(tableCells);
      html.push(`<table><thead><tr>${head.map((c) => `<th>${c}</th>`).join("")}</tr></thead><tbody>` +
        body.map((row) => `<tr>${row.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("") + "</tbody></table>");
    } else if (/^\s*([-*]|\d+\.)\s+/.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const items = take((l) => /^\s*([-*]|\d+\.)\s+/.test(l)).map((l) => l.replace(/^\s*([-*]|\d+\.)\s+/, ""));
      const tag = ordered ? "ol" : "ul";
      html.push(`<${tag}>${items.map((item) => `<li>${inline(item)}</li>`).join("")}</${tag}>`);
    } else {
      const paragraph = [lines.shift(), ...take((l) => l.trim() && !BLOCK_START.test(l))];
      html.push(`<p>${inline(paragraph.join(" "))}</p>`);
    }
  }
  return html.join("\n");
}

// ---------------------------------------------------------------- the release

const percent = (p) => `${(100 * p).toFixed(1)} %`;

// What the scores are, as `mobiledx predict` says it (model_card.json's calibration).
function scoresNote(card) {
  const calibration = card?.calibration;
  if (!card) return "Scores: the model's outputs (no model_card.json says whether they are calibrated).";
  if (calibration?.applied) {
    return `Scores: calibrated probabilities (temperature ${calibration.temperature.toFixed(3)} fitted on the ` +
      "validation split, inside the model).";
  }
  return "Scores: the model's own softmax outputs, not calibrated (read them as scores, not as probabilities).";
}

function operatingRule(point) {
  return point.rule ?? `refer when p(${point.class}) >= ${Number(point.threshold.toPrecision(4))}`;
}

// Like `mobiledx predict`: "mel 41.2 % >= 23.1 %: refer".
function decision(point, probability) {
  const threshold = percent(point.threshold);
  return probability >= point.threshold
    ? `${point.class} ${percent(probability)} >= ${threshold}: refer`
    : `${point.class} ${percent(probability)} < ${threshold}: below the referral threshold`;
}

function showRelease(manifest, card, cardMarkdown) {
  const name = card?.model?.name ?? `mobiledx-${manifest.dataset}`;
  document.title = `${name} — mobiledx`;
  $("model-name").textContent = name;
  $("model-facts").textContent = `${manifest.registered_model ?? manifest.dataset}, version ${manifest.version}, ` +
    `${manifest.variant} (${(manifest.size_bytes / 1e6).toFixed(2)} MB), run ${manifest.run_id}`;
  const point = manifest.operating_point;
  if (point) {
    $("operating-rule").textContent = `Operating point: ${operatingRule(point)}`;
    $("operating-rule").hidden = false;
  }
  $("scores-note").textContent = scoresNote(card);
  $("model-card").innerHTML = cardMarkdown ? markdownToHtml(cardMarkdown)
    : "<h2>Model card</h2><p>This release has no model_card.md.</p>";
}

function setState(state, message) {
  document.body.dataset.state = state;
  $("status").textContent = message;
}

// ---------------------------------------------------------------- classifying

function showScores(labels, scores, point) {
  const list = $("scores");
  list.replaceChildren();
  const order = labels.map((_, i) => i).sort((a, b) => scores[b] - scores[a]);
  for (const index of order) {
    const row = document.createElement("li");
    const label = document.createElement("span");
    const bar = document.createElement("span");
    const fill = document.createElement("span");
    const value = document.createElement("span");
    label.className = "label";
    label.textContent = labels[index];
    bar.className = "bar";
    fill.className = "fill";
    fill.style.width = `${100 * scores[index]}%`;
    bar.append(fill);
    if (point && labels[index] === point.class) {  // the referral threshold on its class's bar
      const mark = document.createElement("span");
      mark.className = "threshold";
      mark.style.left = `${100 * point.threshold}%`;
      mark.title = `referral threshold ${percent(point.threshold)}`;
      bar.append(mark);
      row.className = "operating";
    }
    value.className = "value";
    value.textContent = percent(scores[index]);
    row.append(label, bar, value);
    list.append(row);
  }
}

async function classifyFile(classifier, manifest, file) {
  const started = performance.now();
  let bitmap;
  try {
    // As the pipeline decodes photos: EXIF orientation applied, no colour management.
    bitmap = await createImageBitmap(file, {imageOrientation: "from-image", colorSpaceConversion: "none",
                                            premultiplyAlpha: "none"});
  } catch {
    $("status").textContent = `${file.name}: cannot decode it (not an image this browser reads, or corrupt).`;
    return;
  }
  const classifyStarted = performance.now();
  const categories = classifier.classify(bitmap).classifications[0].categories;
  const finished = performance.now();
  bitmap.close();
  const scores = new Array(manifest.labels.length).fill(0);
  for (const category of categories) scores[category.index] = category.score;

  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  const point = manifest.operating_point;
  showScores(manifest.labels, scores, point);
  $("result-file").textContent = file.name;
  const operating = point ? scores[manifest.labels.indexOf(point.class)] : null;
  $("decision").textContent = point ? decision(point, operating) : "";
  $("decision").className = point && operating >= point.threshold ? "refer" : "";
  $("timing").textContent = `Classified in ${(finished - started).toFixed(0)} ms on this device ` +
    `(MediaPipe ${(finished - classifyStarted).toFixed(1)} ms).`;
  const result = $("result");
  result.hidden = false;
  Object.assign(result.dataset, {
    file: file.name,
    scores: JSON.stringify(scores),
    imageMs: String(finished - started),
    classifyMs: String(finished - classifyStarted),
    count: String(Number(result.dataset.count ?? 0) + 1),
  });
  result.dataset.firstResultMs ??= String(performance.now());
  $("status").textContent = "Choose or drop another photo.";
}

async function loadClassifier(model) {
  const fileset = await FilesetResolver.forVisionTasks(WASM);
  // The CPU delegate: the same XNNPACK kernels as LiteRT and the Python client, and no GPU needed.
  return ImageClassifier.createFromOptions(fileset, {
    baseOptions: {modelAssetBuffer: new Uint8Array(await model), delegate: "CPU"},
    runningMode: "IMAGE",
    maxResults: -1,
    scoreThreshold: 0,
  });
}

// Listeners are attached before anything loads, so a photo chosen while the model loads is not lost: it waits
// for the classifier, and photos are classified in the order they were chosen.
let startClassifier;
let queue = new Promise((resolve, reject) => { startClassifier = {resolve, reject}; });

function enqueue(file) {
  queue = queue.then(async ({classifier, manifest}) => {
    try {
      await classifyFile(classifier, manifest, file);
    } catch (error) {  // e.g. no WebGL: MediaPipe hands images to the model through a WebGL texture
      $("status").textContent = `${file.name}: MediaPipe could not classify it (${error.message ?? error}).`;
      console.error(error);
    }
    return {classifier, manifest};
  });
  queue.catch(() => {});  // a page that cannot start says so in #status
}

$("file-input").addEventListener("change", (event) => {
  if (event.target.files.length) enqueue(event.target.files[0]);
  event.target.value = "";  // choosing the same file again is a new change
});
const zone = $("drop-zone");
zone.addEventListener("dragover", (event) => {
  event.preventDefault();
  zone.classList.add("dragging");
});
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("dragging");
  if (event.dataTransfer.files.length) enqueue(event.dataTransfer.files[0]);
});

async function main() {
  // The model downloads while the release's description and the WebAssembly runtime load.
  const model = fetchOk("model.tflite").then((response) => response.arrayBuffer());
  model.catch(() => {});  // reported below, where it is awaited
  const [manifest, card, cardMarkdown] = await Promise.all(
    [fetchJson("release.json"), optional(fetchJson("model_card.json")), optional(fetchText("model_card.md"))]);
  showRelease(manifest, card, cardMarkdown);
  if (manifest.metadata_input) {
    $("file-input").disabled = true;
    setState("unsupported", "This model also takes patient metadata (age, sex, site): MediaPipe's ImageClassifier " +
      "runs single-input models only, so this page cannot run it. Use `mobiledx predict IMAGE --model " +
      "model.tflite --age A --sex S --site S` instead.");
    throw new Error("a model with a metadata input: not run here");
  }
  const probe = document.createElement("canvas");
  if (!(probe.getContext("webgl2") ?? probe.getContext("webgl"))) {
    throw new Error("this browser gives the page no WebGL, which MediaPipe needs even on the CPU (it hands " +
      "the photo to the model as a WebGL texture): turn on hardware acceleration, or use another browser");
  }
  const classifier = await loadClassifier(model);
  document.body.dataset.readyMs = String(performance.now());
  setState("ready", "Choose or drop a photo.");
  return {classifier, manifest};
}

main().then(startClassifier.resolve, (error) => {
  startClassifier.reject(error);
  if (document.body.dataset.state === "loading") {
    setState("error", `The page could not start: ${error.message ?? error}`);
    console.error(error);
  }
});
