// The chat page: wiring only. The protocol logic (hello, join with resume
// from the read cursor, acknowledged sends, reconnect with backoff, read
// marks, typing) lives in chat.js, which knows
// nothing about pages; this file hands it the real `wx` and copies its state
// into the page's data.
var ParleyChat = require('./chat.js');

var STATUS_TEXT = {
  idle: '',
  connecting: 'connecting…',
  joining: 'joining…',
  online: 'online',
  reconnecting: 'reconnecting…',
  stopped: 'offline'
};

Page({
  data: {
    room: '',
    status: '',
    detail: '',
    warning: '',
    messages: [],
    pending: [],
    typing: '',
    unreadElsewhere: 0,
    draft: '',
    lastId: ''
  },

  onLoad: function (query) {
    var app = getApp();
    var page = this;
    var room = (query && query.room) || app.globalData.room;
    this.setData({ room: room });
    this.chat = ParleyChat.createChat({
      wx: wx,
      url: app.globalData.url,
      user: app.globalData.user,
      room: room,
      device: 'wechat',
      onChange: function (st) {
        var last = st.messages[st.messages.length - 1];
        var elsewhere = 0;
        (st.rooms || []).forEach(function (r) {
          if (r.room !== room) elsewhere += r.unread;
        });
        page.setData({
          status: STATUS_TEXT[st.status] || st.status,
          detail: st.detail,
          warning: st.warning,
          messages: st.messages,
          pending: st.pending,
          typing: st.typing,
          unreadElsewhere: elsewhere,
          lastId: last ? 'm' + last.seq : ''
        });
      }
    });
    this.chat.start();
  },

  onUnload: function () {
    if (this.chat) this.chat.stop();
  },

  onInput: function (e) {
    this.setData({ draft: e.detail.value });
    // At most one typing frame per 2 s, however fast the user types.
    if (e.detail.value) this.chat.typing();
  },

  onSend: function () {
    var text = this.data.draft;
    if (!text || !text.trim()) return;
    this.setData({ draft: '' });
    this.chat.send(text).catch(function (err) {
      wx.showToast({ title: String(err.message || err), icon: 'none' });
    });
  }
});
