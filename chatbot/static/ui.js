// The chat page's own script, served from this origin (/trk-static/ui.js) so that the page's
// Content-Security-Policy needs no 'unsafe-eval' (Gradio compiles script given to it as a string).
//
// Screen readers hear each answer once, complete, from our live region (#live, polite); Gradio's
// chat log is a live region too, which would read every streamed step and the source cards, so it
// is set to "off", and the label Gradio puts on each message (its raw HTML) is taken off, so the
// message is read as shown. A citation marker opens its source card, moves focus to it (a
// <details>: announced as expanded) and scrolls it into view.
(() => {
  const setUp = () => {
    const live = document.getElementById('live');
    const log = document.querySelector('#chatbot [role=log]');
    if (!live || !log) { setTimeout(setUp, 200); return; }
    live.setAttribute('role', 'status');
    live.setAttribute('aria-live', 'polite');
    log.setAttribute('aria-live', 'off');
    const unlabel = () => log.querySelectorAll('[data-testid=bot][aria-label], [data-testid=user][aria-label]')
      .forEach((m) => m.removeAttribute('aria-label'));
    new MutationObserver(unlabel).observe(log, {childList: true, subtree: true, attributes: true,
                                                attributeFilter: ['aria-label']});
  };
  setUp();
  document.addEventListener('click', (event) => {
    const link = event.target.closest ? event.target.closest('a.cite') : null;
    if (!link) return;
    const card = document.getElementById(decodeURIComponent(link.hash.slice(1)));
    if (!card) return;
    event.preventDefault();
    event.stopPropagation();
    card.open = true;
    const summary = card.querySelector('summary');
    if (summary) summary.focus();
    card.scrollIntoView({block: 'nearest'});
  }, true);
})();
