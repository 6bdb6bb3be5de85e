// distillqa web UI: sends the question to POST /ask and shows the answers.
// Every piece of text from the user, the documents or the model goes into the page through
// textContent / text nodes, never innerHTML, so document text cannot inject markup or scripts.
"use strict";

(() => {
  const form = document.getElementById("ask-form");
  const input = document.getElementById("question");
  const topK = document.getElementById("top-k");
  const button = document.getElementById("ask-button");
  const message = document.getElementById("message");
  const list = document.getElementById("answers");
  const status = document.getElementById("status");

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

  // The passage with the answer wrapped in <mark>; start/end are offsets into the passage.
  function passageNode(answer) {
    const p = el("p", "passage");
    const text = answer.passage;
    p.append(
      document.createTextNode(text.slice(0, answer.start)),
      el("mark", null, text.slice(answer.start, answer.end)),
      document.createTextNode(text.slice(answer.end)),
    );
    return p;
  }

  function citation(answer) {
    if (answer.document === null) return "given passage";
    return answer.page === null ? answer.document : `${answer.document}, page ${answer.page}`;
  }

  function answerNode(answer) {
    const item = el("li", "answer");
    const head = el("div", "answer-head");
    head.append(
      el("span", "answer-text", answer.answer),
      el("span", "score", `score ${answer.score.toFixed(3)}`),
    );
    item.append(head, el("div", "citation", citation(answer)), passageNode(answer));
    return item;
  }

  // FastAPI errors: {"detail": "text"} or {"detail": [{"msg": "...", "loc": [...]}, ...]}.
  function errorText(status, data) {
    const detail = data && data.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail) && detail.length) return detail.map((d) => d.msg).join("; ");
    return `the server answered ${status}`;
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
      const response = await fetch("/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ question, top_k: Number(topK.value) }),
      });
      const data = await response.json().catch(() => null);
      if (!response.ok || data === null) throw new Error(errorText(response.status, data));
      list.replaceChildren(...data.answers.map(answerNode));
      setMessage(data.answers.length ? "" : "No answer found.", false);
    } catch (err) {
      list.replaceChildren();
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
  showStatus();
})();
