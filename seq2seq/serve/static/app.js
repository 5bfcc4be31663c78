// The page: asks GET /info for the language pair, POST /translate for n-best lists with
// attention, and draws the selected hypothesis' attention as a table of shaded cells.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "seq2seq-api-key";

function headers() {
  const key = $("key").value || sessionStorage.getItem(KEY_STORE) || "";
  const sent = { "Content-Type": "application/json" };
  if (key) sent.Authorization = `Bearer ${key}`;
  return sent;
}

async function call(path, body) {
  const response = await fetch(path, {
    method: body ? "POST" : "GET",
    headers: headers(),
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json().catch(() => ({ error: response.statusText }));
  if (response.status === 401) $("key-box").hidden = false;
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  if ($("key").value) sessionStorage.setItem(KEY_STORE, $("key").value);
  return answer;
}

async function showInfo() {
  try {
    const info = await call("/info");
    $("pair").textContent = `${info.source_language} → ${info.target_language}`;
    const first = info.checkpoints[0];
    const bleu = first.validation_bleu === null ? "" : `, validation BLEU ${first.validation_bleu}`;
    const models = info.checkpoints.length > 1 ? `an ensemble of ${info.checkpoints.length}, ` : "";
    $("model").textContent = `${models}${info.parameters.toLocaleString()} parameters, ` +
      `vocabulary ${info.vocabulary.source}/${info.vocabulary.target}, ` +
      `trained ${first.step} updates${bleu}`;
    $("beam").value = info.search.beam_size;
    $("beam").max = info.limits.max_beam;
    $("nbest").max = info.limits.max_nbest;
  } catch (error) {
    $("model").textContent = error.message;
  }
}

async function translate() {
  const lines = $("source").value.split("\n").filter((line) => line.trim());
  if (!lines.length) return;
  const beam = Number($("beam").value);
  const request = {
    text: lines, attention: true, beam_size: beam, nbest: Math.min(Number($("nbest").value), beam),
  };
  $("translate").disabled = true;
  $("error").hidden = true;
  const started = performance.now();
  try {
    const answer = await call("/translate", request);
    const total = performance.now() - started;
    $("latency").textContent =
      `${total.toFixed(0)} ms (server ${answer.time_ms.toFixed(0)} ms)`;
    showResults(lines, answer.translations);
  } catch (error) {
    $("error").textContent = error.message;
    $("error").hidden = false;
  } finally {
    $("translate").disabled = false;
  }
}

function showResults(lines, translations) {
  const results = $("results");
  results.replaceChildren();
  translations.forEach((sentence, index) => {
    const card = document.createElement("div");
    card.className = "sentence";
    const source = document.createElement("div");
    source.className = "source";
    source.textContent = lines[index];
    const list = document.createElement("ol");
    sentence.hypotheses.forEach((hypothesis) => {
      const item = document.createElement("li");
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = hypothesis.text;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = hypothesis.score.toFixed(3);
      item.append(text, score);
      item.addEventListener("click", () => select(item, sentence, hypothesis));
      list.append(item);
    });
    card.append(source, list);
    results.append(card);
  });
  const first = results.querySelector("li");
  if (first) first.click();
}

function select(item, sentence, hypothesis) {
  document.querySelectorAll(".sentence li.selected").forEach((li) => li.classList.remove("selected"));
  item.classList.add("selected");
  $("heatmap-title").textContent = `of “${hypothesis.text}”`;
  drawHeatmap(sentence.source_tokens, hypothesis.target_tokens, hypothesis.attention);
  $("heatmap-box").hidden = false;
}

function drawHeatmap(sourceTokens, targetTokens, weights) {
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  head.append(document.createElement("th"));
  for (const token of sourceTokens) {
    const cell = document.createElement("th");
    cell.textContent = token;
    head.append(cell);
  }
  const body = table.createTBody();
  targetTokens.forEach((target, row) => {
    const line = body.insertRow();
    const label = document.createElement("th");
    label.textContent = target;
    line.append(label);
    sourceTokens.forEach((source, column) => {
      const weight = weights[row][column];
      const cell = line.insertCell();
      cell.style.background = `rgba(36, 86, 198, ${weight})`;
      cell.title = `${source} → ${target}: ${weight.toFixed(3)}`;
      cell.addEventListener("mouseenter", () => { $("readout").textContent = cell.title; });
    });
  });
  $("heatmap").replaceChildren(table);
}

$("translate").addEventListener("click", translate);
$("source").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    translate();
  }
});
$("key").addEventListener("change", showInfo);
showInfo();
