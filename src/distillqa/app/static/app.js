// distillqa web UI: sends the question to POST /ask and shows the answers, each with how likely it
// is to be right; under each, "Right" and "Wrong" send the user's judgement to POST /feedback
// ("Wrong": select the right answer in the passage, or say it is not in these passages).
// Every piece of text from the user, the documents or the model goes into the page through
// textContent / text nodes, never innerHTML, so document text cannot inject markup or scripts.
// Offsets: the server counts characters (code points), JavaScript strings UTF-16 units; they
// differ after an emoji or any other character beyond U+FFFF, so offsets are converted both ways.
"use strict";

(() => {
  const form = document.getElementById("ask-form");
  const input = document.getElementById("question");
  const topK = document.getElementById("top-k");
  const button = document.getElementById("ask-button");
  const message = document.getElementById("message");
  const results = document.getElementById("results");
  const status = document.getElementById("status");
  const LIKELY_RIGHT = 0.7; // distillqa.records.LIKELY_RIGHT
  // The answers being corrected: each one's update, called when the selection changes.
  const correcting = new Set();

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setMessage(text, isError) {
    message.textContent = text;
    message.className = isError ? "error" : "";
  }

  // UTF-16 offset of the server's character offset `n` in `text`, and back.
  function unitsOf(text, n) {
    return Array.from(text).slice(0, n).join("").length;
  }
  function charsOf(text, units) {
    return Array.from(text.slice(0, units)).length;
  }

  // The passage with the answer wrapped in <mark>; start/end are offsets into the passage.
  function passageNode(answer) {
    const p = el("p", "passage");
    const text = answer.passage;
    const start = unitsOf(text, answer.start);
    const end = unitsOf(text, answer.end);
    p.append(
      document.createTextNode(text.slice(0, start)),
      el("mark", null, text.slice(start, end)),
      document.createTextNode(text.slice(end)),
    );
    return p;
  }

  function citation(answer) {
    if (answer.document === null) return "given passage";
    return answer.page === null ? answer.document : `${answer.document}, page ${answer.page}`;
  }

  // How likely the answer is to be right, in words and colour, the percentage small beside it
  // (distillqa.records.confidence_words says the same). None from a server without confidence.
  function confidenceNode(answer, notFoundBelow) {
    // both come with every answer of this server; an older one sends neither
    if (typeof answer.confidence !== "number" || typeof notFoundBelow !== "number") return null;
    let words = "unlikely";
    let level = "low";
    if (answer.confidence >= Math.max(LIKELY_RIGHT, notFoundBelow)) {
      words = "likely right";
      level = "high";
    } else if (answer.confidence >= notFoundBelow) {
      words = "may be right";
      level = "medium";
    }
    const node = el("span", `confidence ${level}`, words);
    node.title = "Estimated probability that this answer is right";
    node.append(" ", el("small", null, `${Math.round(answer.confidence * 100)}%`));
    return node;
  }

  // UTF-16 units of `node`'s text before the point (container, offset). The passage's text
  // nodes (before the answer, inside its <mark>, after it) together are the passage's text.
  function unitsBefore(node, container, offset) {
    const range = document.createRange();
    range.setStart(node, 0);
    range.setEnd(container, offset);
    return range.toString().length;
  }

  // What is selected in the passage shown in `node` (whose text is `text`), spaces at either end
  // left out: {start, end} in characters, and the text; null when nothing in it is selected.
  function selectionIn(node, text) {
    const selection = window.getSelection();
    if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return null;
    const range = selection.getRangeAt(0);
    if (!node.contains(range.startContainer) || !node.contains(range.endContainer)) return null;
    let start = unitsBefore(node, range.startContainer, range.startOffset);
    let end = unitsBefore(node, range.endContainer, range.endOffset);
    while (start < end && /\s/.test(text[start])) start += 1;
    while (end > start && /\s/.test(text[end - 1])) end -= 1;
    if (start === end) return null;
    return { start: charsOf(text, start), end: charsOf(text, end), text: text.slice(start, end) };
  }

  // FastAPI errors: {"detail": "text"} or {"detail": [{"msg": "...", "loc": [...]}, ...]}.
  function errorText(status, data) {
    const detail = data && data.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail) && detail.length) return detail.map((d) => d.msg).join("; ");
    return `the server answered ${status}`;
  }

  async function postJSON(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    if (!response.ok || data === null) throw new Error(errorText(response.status, data));
    return data;
  }

  // "Right" / "Wrong" under an answer. "Wrong" asks for the right span, selected in `passage`
  // (the answer's shown passage), or "Not in these passages".
  function feedbackNode(answer, question, passage) {
    const box = el("div", "feedback");
    const right = el("button", "secondary", "Right");
    const wrong = el("button", "secondary", "Wrong");
    const panel = el("div", "correction");
    const hint = el("span", "hint", "Select the right answer in the passage above.");
    const save = el("button", "save", "Save correction");
    const notIn = el("button", "secondary", "Not in these passages");
    const note = el("span", "feedback-note");
    note.setAttribute("role", "status");
    for (const b of [right, wrong, save, notIn]) b.type = "button";
    panel.hidden = true;
    save.disabled = true;
    panel.append(hint, save, notIn);
    box.append(right, wrong, panel, note);
    const shown = { question, passage: answer.passage, answer: answer.answer, start: answer.start, end: answer.end };
    let selected = null;

    function update() {
      selected = selectionIn(passage, answer.passage);
      save.disabled = selected === null;
      hint.textContent = selected ? `Right answer: “${selected.text}”` : "Select the right answer in the passage above.";
    }

    async function send(judgement, thanks) {
      const buttons = [right, wrong, save, notIn];
      buttons.forEach((b) => { b.disabled = true; });
      note.className = "feedback-note";
      note.textContent = "Saving…";
      try {
        const saved = await postJSON("/feedback", { ...shown, ...judgement });
        correcting.delete(update);
        passage.classList.remove("selecting");
        panel.hidden = true;
        right.hidden = true;
        wrong.hidden = true;
        note.textContent = thanks(saved);
      } catch (err) {
        buttons.forEach((b) => { b.disabled = false; });
        save.disabled = selected === null;
        note.className = "feedback-note error";
        note.textContent = `Not saved: ${err.message}`;
      }
    }

    right.addEventListener("click", () => send({ verdict: "right" }, () => "Saved: marked right. Thank you."));
    wrong.addEventListener("click", () => {
      wrong.disabled = true;
      panel.hidden = false;
      passage.classList.add("selecting");
      correcting.add(update);
      update();
    });
    save.addEventListener("click", () => {
      if (selected === null) return;
      send(
        { verdict: "wrong", correct_start: selected.start, correct_end: selected.end },
        (saved) => `Saved: the right answer is “${saved.gold}”. Retraining learns it.`,
      );
    });
    notIn.addEventListener("click", () =>
      send({ verdict: "wrong", not_in_passages: true }, () => "Saved: not in these passages. Thank you."));
    return box;
  }

  function answerNode(answer, question, notFoundBelow) {
    const item = el("li", "answer");
    const head = el("div", "answer-head");
    const meta = el("span", "answer-meta");
    const confidence = confidenceNode(answer, notFoundBelow);
    // words and colour; the bare ranking score only from an older server without confidence
    meta.append(confidence || el("span", "score", `score ${answer.score.toFixed(3)}`));
    head.append(el("span", "answer-text", answer.answer), meta);
    const passage = passageNode(answer);
    item.append(head, el("div", "citation", citation(answer)), passage, feedbackNode(answer, question, passage));
    return item;
  }

  // The answers; when the server says the documents do not answer the question (`found`
  // false), they are folded away as best guesses. An older server sends no `found`.
  function showAnswers(data, question) {
    const answers = Array.isArray(data.answers) ? data.answers : [];
    const list = el("ol", "answers");
    list.id = "answers";
    list.append(...answers.map((a) => answerNode(a, question, data.not_found_below)));
    if (data.found === false && answers.length) {
      const guesses = el("details", "guesses");
      guesses.append(el("summary", null, "Best guesses"), list);
      results.replaceChildren(guesses);
      setMessage("The documents do not seem to answer this question.", false);
    } else {
      results.replaceChildren(list);
      setMessage(answers.length ? "" : "No answer found.", false);
    }
  }

  async function ask(event) {
    event.preventDefault();
    const question = input.value.trim();
    if (!question) {
      setMessage("Type a question first.", true);
      return;
    }
    button.disabled = true;
    setMessage("Reading…", false);
    try {
      const data = await postJSON("/ask", { question, top_k: Number(topK.value) });
      correcting.clear();
      showAnswers(data, question);
    } catch (err) {
      correcting.clear();
      results.replaceChildren();
      setMessage(`Error: ${err.message}`, true);
    } finally {
      button.disabled = false;
    }
  }

  async function showStatus() {
    try {
      const response = await fetch("/health");
      const h = await response.json();
      status.textContent = `${h.documents} documents · ${h.passages} passages · reader ${h.model}`;
    } catch (err) {
      status.textContent = "The server is not reachable.";
    }
  }

  form.addEventListener("submit", ask);
  document.addEventListener("selectionchange", () => correcting.forEach((update) => update()));
  showStatus();
})();
